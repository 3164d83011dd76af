package sources_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/pipeline"
)

// The Kafka source reports each partition's lag, the records it has not
// read yet: with a backlog, the end offset minus what Read has returned
// of the partition, and 0 on every partition once the backlog is read.
// Lag is their sum. A goroutine reads both all along, as the metrics do.
func TestKafkaSourceSplitLags(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 2)
	const perPartition = 300
	var recs []*kgo.Record
	for p := range int32(2) {
		for i := range perPartition {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, `{"i":%d}`, i)})
		}
	}
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	src := newKafkaSource(t, kafkaSourceCfg(c, kafkatest.Name("g"), topic), pipeline.Build{})
	lagger := src.(pipeline.SplitLagger)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			lagger.SplitLags()
			src.(pipeline.Lagger).Lag()
			time.Sleep(time.Millisecond)
		}
	})
	defer func() { close(stop); wg.Wait() }()

	read := map[string]int64{} // records Read returned, per split
	checkedBacklog := false
	deadline := time.Now().Add(20 * time.Second)
	for total := int64(0); total < 2*perPartition; {
		if time.Now().After(deadline) {
			t.Fatalf("read %d records, want %d", total, 2*perPartition)
		}
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); err != nil {
			t.Fatalf("Read: %v", err)
		}
		for _, r := range b.Records {
			read[r.Split]++
		}
		total += int64(len(b.Records))
		if checkedBacklog || len(b.Records) == 0 {
			continue
		}
		// The first batch (at most 100 records): every partition whose end
		// is known has its whole backlog but what was read left.
		checkedBacklog = true
		got := lagger.SplitLags()
		if len(got) == 0 {
			t.Fatalf("SplitLags() is empty after reading %d records of a backlog", total)
		}
		var sum int64
		for split, lag := range got {
			if want := perPartition - read[split]; lag != want || lag <= 0 {
				t.Errorf("backlog: SplitLags()[%s] = %d, want %d (%d of %d read)", split, lag, want, read[split], perPartition)
			}
			sum += lag
		}
		if lag := src.(pipeline.Lagger).Lag(); lag != sum || lag <= 0 {
			t.Errorf("backlog: Lag() = %d, want the sum of %v = %d", lag, got, sum)
		}
	}
	want := map[string]int64{topic + "/0": 0, topic + "/1": 0}
	if got := lagger.SplitLags(); !maps.Equal(got, want) {
		t.Errorf("backlog read: SplitLags() = %v, want %v", got, want)
	}
	if lag := src.(pipeline.Lagger).Lag(); lag != 0 {
		t.Errorf("backlog read: Lag() = %d, want 0", lag)
	}
}
