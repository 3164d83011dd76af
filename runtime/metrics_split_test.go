package runtime_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	_ "github.com/weirhq/weir/sources"
)

// /metrics carries, per Kafka partition, the source's lag and the
// watermark each event-time operator keeps for it: a pipeline reads a
// two-partition backlog whose event times are known, and the gauges
// carry the partition (and the source) as labels, the lag 0 once read,
// and each operator's watermark for each partition: its last event time
// minus that operator's `watermark`.
func TestMetricsPerSplitLagAndWatermark(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 2)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	last := map[int32]time.Time{0: t0.Add(49 * time.Second), 1: t0.Add(129 * time.Second)}
	var recs []*kgo.Record
	for p, n := range map[int32]int{0: 50, 1: 30} {
		for i := range n {
			ts := last[p].Add(-time.Duration(n-1-i) * time.Second)
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p,
				Value: fmt.Appendf(nil, `{"id":"%d-%d","ts":%q}`, p, i, ts.Format(time.RFC3339))})
		}
	}
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	r := startAdmin(t, fmt.Sprintf(`
data_dir: %s/data
pipelines:
  - name: t
    checkpoint_interval: 50ms
    sources:
      - kafka: {brokers: %s, topics: [%s], group: %s, heartbeat_interval: 100ms}
    operators:
      - jsonparse: {}
      - dedupe: {key: id, horizon: 1m, event_time: ts, watermark: 10s}
      - window: {tumbling: 1m, event_time: ts, watermark: 5s, aggregate: {n: count()}}
    sinks:
      - file: { path: %s/out.jsonl }
`, dir, c.BrokerList(), topic, kafkatest.Name("g"), dir))

	split := func(p int32) string { return fmt.Sprintf("%s/%d", topic, p) }
	watermark := func(op string, p int32) map[string]string {
		return map[string]string{"weir_pipeline": "t", "weir_component": op, "weir_component_kind": "operator",
			"weir_source": "sources[0]/kafka", "weir_split": split(p)}
	}
	lag := func(p int32) map[string]string {
		return map[string]string{"weir_pipeline": "t", "weir_component": "sources[0]/kafka", "weir_component_kind": "source",
			"weir_split": split(p)}
	}
	want := func(delay time.Duration, p int32) float64 { return float64(last[p].Add(-delay).Unix()) }
	// Poll until the window's watermarks and the lags are final (or time
	// is up), then check every figure.
	var fams map[string]*dto.MetricFamily
	final := func() bool {
		for p := range int32(2) {
			if v, ok := value(fams, "weir_operator_split_watermark_seconds", watermark("operators[2]/window", p)); !ok || v != want(5*time.Second, p) {
				return false
			}
			if v, ok := value(fams, "weir_source_split_lag", lag(p)); !ok || v != 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fams = scrape(t, r); final() || time.Now().After(deadline) {
			break
		}
	}
	for p := range int32(2) {
		if v, ok := value(fams, "weir_operator_split_watermark_seconds", watermark("operators[2]/window", p)); !ok || v != want(5*time.Second, p) {
			t.Errorf("window's watermark for %s = %v (present %v), want %v", split(p), v, ok, want(5*time.Second, p))
		}
		if v, ok := value(fams, "weir_source_split_lag", lag(p)); !ok || v != 0 {
			t.Errorf("lag of %s = %v (present %v), want 0", split(p), v, ok)
		}
	}
	for p := range int32(2) {
		if v, ok := value(fams, "weir_operator_split_watermark_seconds", watermark("operators[1]/dedupe", p)); !ok || v != want(10*time.Second, p) {
			t.Errorf("dedupe's watermark for %s = %v (present %v), want %v", split(p), v, ok, want(10*time.Second, p))
		}
	}
	if v, ok := value(fams, "weir_source_lag", map[string]string{"weir_component": "sources[0]/kafka"}); !ok || v != 0 {
		t.Errorf("weir_source_lag = %v (present %v), want 0", v, ok)
	}
	for _, name := range []string{"weir_operator_split_watermark_seconds", "weir_source_split_lag"} {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "weir_split" && l.GetValue() != split(0) && l.GetValue() != split(1) {
					t.Errorf("%s has a series for split %q, not a partition of %s", name, l.GetValue(), topic)
				}
			}
		}
	}
	if n := len(fams["weir_operator_split_watermark_seconds"].GetMetric()); n != 4 {
		t.Errorf("weir_operator_split_watermark_seconds has %d series, want 4 (2 operators × 2 partitions)", n)
	}
}
