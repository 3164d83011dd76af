package sources_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/sources"
)

// kafkaSourceCfg returns a source config for tests: fast heartbeats, so
// rebalances settle in a fraction of a second.
func kafkaSourceCfg(c *kafkatest.Cluster, group string, topics ...string) *sources.KafkaConfig {
	cfg := sources.NewKafkaConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = c.Brokers, topics, group
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.SessionTimeout = 10 * time.Second
	cfg.RebalanceTimeout = 10 * time.Second
	return cfg
}

func newKafkaSource(t *testing.T, cfg *sources.KafkaConfig, b pipeline.Build) pipeline.Source {
	t.Helper()
	if b.Dir == "" {
		b.Dir = t.TempDir()
	}
	if b.Component == "" {
		b.Component = "t/sources[0]/kafka"
	}
	b.BatchSize = 100
	if testing.Verbose() {
		b.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	src, err := cfg.NewSource(b)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	t.Cleanup(func() { src.Close(context.Background()) })
	return src
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// readN reads until n records arrived (acknowledging nothing), or fails.
func readN(t *testing.T, src pipeline.Source, n int) []*pipeline.Record {
	t.Helper()
	var out []*pipeline.Record
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d records, want %d", len(out), n)
		}
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); err != nil {
			t.Fatalf("Read: %v", err)
		}
		out = append(out, b.Records...)
	}
	return out
}

func values(n, from int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"i":%d}`, from+i)
	}
	return out
}

func TestKafkaSourceRoundTrip(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 3)
	ts := time.UnixMilli(1_700_000_000_123)
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, `{"i":%d}`, i),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}, Timestamp: ts})
	}
	c.Produce(t, topic, recs...)

	src := newKafkaSource(t, kafkaSourceCfg(c, kafkatest.Name("g"), topic), pipeline.Build{})
	got := readN(t, src, 300)
	seen := map[string]bool{}
	for _, r := range got {
		if seen[string(r.Value)] {
			t.Fatalf("record %s read twice", r.Value)
		}
		seen[string(r.Value)] = true
		if !strings.HasPrefix(r.Origin.Name, topic+"/") || r.Origin.Offset < 0 {
			t.Fatalf("origin = %+v, want %s/<partition> and an offset", r.Origin, topic)
		}
		if !r.Time.Equal(ts) {
			t.Fatalf("time = %v, want the Kafka timestamp %v", r.Time, ts)
		}
		if len(r.Key) == 0 || len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "v" {
			t.Fatalf("key %q headers %+v, want a key and h=v", r.Key, r.Headers)
		}
	}
	if len(seen) != 300 {
		t.Fatalf("got %d distinct records, want 300", len(seen))
	}
	// Idle: Read returns promptly with nothing.
	start := time.Now()
	b := &pipeline.Batch{}
	if _, err := src.Read(context.Background(), b); err != nil || len(b.Records) != 0 {
		t.Fatalf("idle Read = %d records, %v", len(b.Records), err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle Read took %s, want about poll_timeout", d)
	}
}

// position decodes a Position into topic → partition → offset.
func position(t *testing.T, src pipeline.Source) map[string]map[string]int64 {
	t.Helper()
	data, err := src.(pipeline.Positioned).Position()
	if err != nil {
		t.Fatal(err)
	}
	var pos map[string]map[string]int64
	if err := json.Unmarshal(data, &pos); err != nil {
		t.Fatalf("position %s: %v", data, err)
	}
	return pos
}

func TestKafkaSourcePositionSeek(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 2)
	c.ProduceValues(t, topic, values(100, 0)...)
	group := kafkatest.Name("g")

	// First run: read everything, acknowledge nothing (no checkpoint
	// committed): the group has no offsets, Position has them all.
	dir := t.TempDir() // one data_dir: a restart keeps the static member id
	src := newKafkaSource(t, kafkaSourceCfg(c, group, topic), pipeline.Build{Dir: dir})
	readN(t, src, 100)
	pos := position(t, src)
	total := pos[topic]["0"] + pos[topic]["1"]
	if total != 100 {
		t.Fatalf("position %v: offsets sum to %d, want 100", pos, total)
	}
	// Rewind partition 0 by 10 in the "checkpoint", as if the last
	// checkpoint had been taken 10 records earlier.
	pos[topic]["0"] -= 10
	data, _ := json.Marshal(pos)
	src.Close(context.Background())

	src2 := newKafkaSource(t, kafkaSourceCfg(c, group, topic), pipeline.Build{Dir: dir})
	if err := src2.(pipeline.Positioned).Seek(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	got := readN(t, src2, 10)
	for _, r := range got {
		if r.Origin.Name != topic+"/0" || r.Origin.Offset < pos[topic]["0"] {
			t.Fatalf("after Seek read %s@%d, want %s/0 from %d", r.Origin.Name, r.Origin.Offset, topic, pos[topic]["0"])
		}
	}
	// Position right after Seek, before any assignment, keeps the
	// checkpointed offsets.
	src3 := newKafkaSource(t, kafkaSourceCfg(c, kafkatest.Name("g"), topic), pipeline.Build{})
	src3.(pipeline.Positioned).Seek(context.Background(), data)
	if got := position(t, src3); got[topic]["0"] != pos[topic]["0"] || got[topic]["1"] != pos[topic]["1"] {
		t.Fatalf("Position before the first Read = %v, want the sought %v", got, pos)
	}
}

// A partition starts at the larger of the checkpointed offset and the
// group's committed one: a stale checkpoint never re-reads what another
// process committed.
func TestKafkaSourceSeekBehindGroup(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 1)
	c.ProduceValues(t, topic, values(50, 0)...)
	group := kafkatest.Name("g")
	commit(t, c, group, topic, 0, 40)
	src := newKafkaSource(t, kafkaSourceCfg(c, group, topic), pipeline.Build{})
	src.(pipeline.Positioned).Seek(context.Background(), fmt.Appendf(nil, `{%q:{"0":20}}`, topic))
	got := readN(t, src, 10)
	if got[0].Origin.Offset != 40 {
		t.Fatalf("started at %d, want the group's 40 (checkpoint said 20)", got[0].Origin.Offset)
	}
}

func commit(t *testing.T, c *kafkatest.Cluster, group, topic string, partition int32, off int64) {
	t.Helper()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: topic, Partition: partition, At: off, LeaderEpoch: -1})
	resp, err := c.Admin.CommitOffsets(context.Background(), group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit %s/%d@%d for %s: %v", topic, partition, off, group, err)
	}
}

func committed(t *testing.T, c *kafkatest.Cluster, group, topic string, partition int32) int64 {
	t.Helper()
	resp, err := c.Admin.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := resp.Lookup(topic, partition)
	if !ok {
		return -1
	}
	return o.At
}

func TestKafkaSourceStartAt(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 1)
	old := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	recs := make([]*kgo.Record, 10)
	for i := range recs {
		recs[i] = &kgo.Record{Value: fmt.Appendf(nil, "old-%d", i), Timestamp: old}
	}
	c.Produce(t, topic, recs...)
	cut := time.Now().Add(-time.Minute)
	for i := range recs {
		recs[i] = &kgo.Record{Value: fmt.Appendf(nil, "new-%d", i), Timestamp: time.Now()}
	}
	c.Produce(t, topic, recs...)

	for _, tc := range []struct {
		startAt string
		commit  int64 // group offset committed beforehand; -1 none
		first   int64 // offset of the first record read
	}{
		{"committed", -1, 0},
		{"earliest", -1, 0},
		{cut.Format(time.RFC3339Nano), -1, 10},
		{"committed", 7, 7},
		{"latest-but-committed", 3, 3}, // a committed offset wins over start_at
	} {
		t.Run(strings.ReplaceAll(tc.startAt, ":", ""), func(t *testing.T) {
			group := kafkatest.Name("g")
			if tc.commit >= 0 {
				commit(t, c, group, topic, 0, tc.commit)
			}
			cfg := kafkaSourceCfg(c, group, topic)
			cfg.StartAt = strings.TrimSuffix(tc.startAt, "-but-committed")
			src := newKafkaSource(t, cfg, pipeline.Build{})
			got := readN(t, src, 1)
			if got[0].Origin.Offset != tc.first {
				t.Fatalf("start_at %s: first offset %d, want %d", tc.startAt, got[0].Origin.Offset, tc.first)
			}
		})
	}
	t.Run("latest", func(t *testing.T) {
		cfg := kafkaSourceCfg(c, kafkatest.Name("g"), topic)
		cfg.StartAt = "latest"
		src := newKafkaSource(t, cfg, pipeline.Build{})
		// Read until assigned (Position lists the partition at the end).
		deadline := time.Now().Add(10 * time.Second)
		for position(t, src)[topic]["0"] != 20 {
			if time.Now().After(deadline) {
				t.Fatalf("position %v, want the end offset 20", position(t, src))
			}
			b := &pipeline.Batch{}
			src.Read(context.Background(), b)
			if len(b.Records) > 0 {
				t.Fatalf("start_at latest read old record %s", b.Records[0].Value)
			}
		}
		c.ProduceValues(t, topic, []byte("after"))
		if got := readN(t, src, 1); string(got[0].Value) != "after" {
			t.Fatalf("read %s, want the record produced after the start", got[0].Value)
		}
	})
}

func TestKafkaSourceConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`{topics: [a], group: g}`, "brokers is required"},
		{`{brokers: ["x:1"], group: g}`, "topics is required"},
		{`{brokers: ["x:1"], topics: [a]}`, "group is required"},
		{`{brokers: ["x:1"], topics: ["a b"], group: g}`, "not a valid topic name"},
		{`{brokers: ["x:1"], topics: ["a("], topic_regex: true, group: g}`, "topic regex"},
		{`{brokers: ["x:1"], topics: [a], group: g, start_at: yesterday}`, "start_at"},
		{`{brokers: ["x:1"], topics: [a], group: g, isolation_level: dirty}`, "isolation_level"},
		{`{brokers: ["x:1"], topics: [a], group: g, balancer: random}`, "balancer"},
		{`{brokers: ["x:1"], topics: [a], group: g, sasl: {mechanism: gssapi, username: u, password: p}}`, "sasl.mechanism"},
		{`{brokers: ["x:1"], topics: [a], group: g, sasl: {mechanism: plain, username: u}}`, "password"},
		{`{brokers: ["x"], topics: [a], group: g}`, "host:port"},
	} {
		_, err := pipeline.Default.Load("t.yaml", []byte("pipelines:\n  - name: p\n    sources:\n      - kafka: "+tc.yaml+"\n    sinks:\n      - stdout: {}\n    guarantee: at_least_once\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestKafkaSourceMissingTopic(t *testing.T) {
	c := kafkatest.New(t)
	cfg := kafkaSourceCfg(c, "g", "weir-no-such-topic-"+kafkatest.Name("x"))
	_, err := cfg.NewSource(pipeline.Build{Dir: t.TempDir(), Component: "t/sources[0]/kafka"})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v, want: topic does not exist", err)
	}
}

func TestKafkaSourceUnreachable(t *testing.T) {
	cfg := sources.NewKafkaConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = []string{"127.0.0.1:1"}, []string{"t"}, "g"
	cfg.ConnectTimeout = 300 * time.Millisecond
	_, err := cfg.NewSource(pipeline.Build{Dir: t.TempDir(), Component: "t/sources[0]/kafka"})
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("err = %v, want: brokers did not answer", err)
	}
}

// fakeRuntime stands in for the runtime around one source: it reads in a
// loop and, on RequestCheckpoint, "commits a checkpoint" by running the
// acks of every batch read so far.
type fakeRuntime struct {
	mu   sync.Mutex // guards acks, recs
	acks []pipeline.AckFunc
	recs []*pipeline.Record
}

func (f *fakeRuntime) request(ctx context.Context) error {
	f.mu.Lock()
	acks := f.acks
	f.acks = nil
	f.mu.Unlock()
	for _, a := range acks {
		if err := a(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRuntime) run(ctx context.Context, src pipeline.Source) error {
	for ctx.Err() == nil {
		b := &pipeline.Batch{}
		ack, err := src.Read(ctx, b)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && err != io.EOF {
			return err
		}
		f.mu.Lock()
		f.recs = append(f.recs, b.Records...)
		if ack != nil {
			f.acks = append(f.acks, ack)
		}
		f.mu.Unlock()
	}
	return nil
}

func (f *fakeRuntime) records() []*pipeline.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.recs)
}

// Two members of one group: when the second joins, the first hands
// partitions over through RequestCheckpoint and a synchronous commit, and
// every offset is read exactly once across the two.
func TestKafkaSourceRebalanceHandsOver(t *testing.T) {
	c := kafkatest.New(t)
	topic := c.Topic(t, 4)
	group := kafkatest.Name("g")
	c.ProduceValues(t, topic, values(400, 0)...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var a, b fakeRuntime
	srcA := newKafkaSource(t, kafkaSourceCfg(c, group, topic), pipeline.Build{RequestCheckpoint: a.request, Dir: filepath.Join(t.TempDir(), "a")})
	errs := make(chan error, 2)
	go func() { errs <- a.run(ctx, srcA) }()
	waitLen(t, a.records, 400)

	srcB := newKafkaSource(t, kafkaSourceCfg(c, group, topic), pipeline.Build{RequestCheckpoint: b.request, Dir: filepath.Join(t.TempDir(), "b")})
	go func() { errs <- b.run(ctx, srcB) }()
	// Wait until B owns some partitions, then produce more.
	deadline := time.Now().Add(20 * time.Second)
	for len(position(t, srcB)[topic]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("second member never got a partition")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.ProduceValues(t, topic, values(400, 400)...)
	all := func() []*pipeline.Record { return append(a.records(), b.records()...) }
	waitLen(t, all, 800)
	time.Sleep(300 * time.Millisecond) // let duplicates, if any, arrive
	cancel()
	seen := map[string]int{}
	for _, r := range all() {
		seen[fmt.Sprintf("%s@%d", r.Origin.Name, r.Origin.Offset)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", k, n)
		}
	}
	if len(seen) != 800 {
		t.Fatalf("read %d distinct offsets, want 800", len(seen))
	}
	if len(b.records()) == 0 {
		t.Fatal("the second member read nothing")
	}
	// The handed-over partitions' offsets were committed to the group by
	// the first member: B started exactly there (no offset read twice,
	// checked above), and the group has them.
	handed := 0
	for p := range int32(4) {
		if committed(t, c, group, topic, p) >= 0 {
			handed++
		}
	}
	if handed == 0 {
		t.Error("no handed-over partition has a committed offset")
	}
}

func waitLen(t *testing.T, f func() []*pipeline.Record, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(f()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("have %d records, want %d", len(f()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
