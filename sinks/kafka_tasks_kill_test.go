package sinks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/kafkatest"
)

// TestKafkaTasksKill runs tasksKillTest into a Kafka topic: the tasks'
// offsets commit to the source's group under its membership, and their
// states to a changelog, in the transaction of the output. Read as
// read_committed, every (window, service) must be in exactly one record.
func TestKafkaTasksKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill tests build the weir binary; skipped with -short")
	}
	tasksKillTest(t, "", func(c *kafkatest.Cluster) (string, func(context.Context) (map[taskWindow]taskAgg, error)) {
		out := c.Topic(t, 3)
		reader := c.NewReader(t, out)
		sink := fmt.Sprintf("kafka: { brokers: %s, topic: %s, key: service }", c.BrokerList(), out)
		return sink, func(context.Context) (map[taskWindow]taskAgg, error) {
			got := map[taskWindow]taskAgg{}
			for _, r := range reader.Records() {
				var w struct {
					WindowStart string `json:"window_start"`
					Service     string `json:"service"`
					N, S        int64
				}
				if err := json.Unmarshal(r.Value, &w); err != nil {
					return nil, fmt.Errorf("output record %q: %w", r.Value, err)
				}
				start, err := time.Parse(time.RFC3339Nano, w.WindowStart)
				if err != nil {
					return nil, err
				}
				k := taskWindow{start.UTC(), w.Service}
				if _, dup := got[k]; dup {
					return nil, fmt.Errorf("window %s %s is in two records", w.WindowStart, w.Service)
				}
				got[k] = taskAgg{w.N, w.S}
			}
			return got, nil
		}
	})
}
