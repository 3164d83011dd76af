package runtime

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	_ "github.com/weirhq/weir/sinks"
	_ "github.com/weirhq/weir/sources"
)

// A task operator reports the per-split watermarks of all its instances,
// one per task, as one map, read from another goroutine as the metrics
// do; a dropped task's splits go with it.
func TestTaskOperatorSplitWatermarks(t *testing.T) {
	cfg, err := pipeline.Default.Load("t.yaml", []byte(fmt.Sprintf(`
pipelines:
  - name: t
    sources: [{generate: {}}]
    operators:
      - window: {tumbling: 1m, event_time: ts, watermark: 5s, aggregate: {n: count()}}
    sinks: [{file: {path: %s/out.jsonl}}]
`, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	oc := cfg.Pipelines[0].Operators[0].Config.(pipeline.OperatorConfig)
	to := &taskOperator{id: "operators[0]/window", tasks: map[string]*taskInstance{}, restore: &taskRestores{}, last: true,
		newOp: func() (pipeline.Operator, error) {
			return oc.NewOperator(pipeline.Build{Pipeline: "t", Component: "t/operators[0]/window"})
		}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			to.SplitWatermarks()
		}
	})
	defer func() { close(stop); wg.Wait() }()

	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	check := func(what string, marks map[string]time.Duration) {
		t.Helper()
		want := map[pipeline.SplitID]time.Time{}
		for split, d := range marks {
			want[pipeline.SplitID{Source: 0, Split: split}] = t0.Add(d)
		}
		if got := to.SplitWatermarks(); !maps.Equal(got, want) {
			t.Errorf("%s: SplitWatermarks() = %v, want %v", what, got, want)
		}
	}
	if _, err := to.OnSplits(ctx, 0, pipeline.SplitChange{Reset: true, Added: []string{"logs/0", "logs/1"}}, &pipeline.Batch{}); err != nil {
		t.Fatal(err)
	}
	check("announced", nil)
	b := &pipeline.Batch{}
	for _, e := range []struct {
		split string
		d     time.Duration
	}{{"logs/0", 10 * time.Second}, {"logs/1", 20 * time.Second}, {"logs/0", 70 * time.Second}} {
		r := &pipeline.Record{Split: e.split, Value: fmt.Appendf(nil, `{"ts":%q}`, t0.Add(e.d).Format(time.RFC3339Nano))}
		if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
			t.Fatal(err)
		}
		b.Records = append(b.Records, r)
	}
	if err := to.Process(ctx, b); err != nil {
		t.Fatal(err)
	}
	check("after records", map[string]time.Duration{"logs/0": 65 * time.Second, "logs/1": 15 * time.Second})
	if _, err := to.OnSplits(ctx, 0, pipeline.SplitChange{Removed: []string{"logs/0"}}, &pipeline.Batch{}); err != nil {
		t.Fatal(err)
	}
	check("logs/0 removed", map[string]time.Duration{"logs/1": 15 * time.Second})
}
