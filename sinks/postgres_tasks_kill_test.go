package sinks_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
	"github.com/weirhq/weir/internal/killpoint"
	"github.com/weirhq/weir/internal/testservices"
)

// taskWindow is one (window, service) result: count and sum.
type taskWindow struct {
	start   time.Time
	service string
}

type taskAgg struct{ n, sum int64 }

// taskFeed produces keyed log events to a 6-partition topic (each service
// on one partition, as a producer keying by service does), and keeps the
// GROUP BY of what it produced: per-minute count and sum per service.
type taskFeed struct {
	t          *testing.T
	cl         *kgo.Client
	topic      string
	partitions int32
	base       time.Time
	rng        *rand.Rand

	mu   sync.Mutex // guards want, n
	want map[taskWindow]taskAgg
	n    int
}

func (f *taskFeed) partition(svc string) int32 {
	h := fnv.New32a()
	h.Write([]byte(svc))
	return int32(h.Sum32() % uint32(f.partitions))
}

// produce writes k more events: 20 ms apart in event time, up to 2 s
// out of order (the pipeline's watermark is 5 s).
func (f *taskFeed) produce(ctx context.Context, k int) error {
	recs := make([]*kgo.Record, 0, k)
	f.mu.Lock()
	for range k {
		ts := f.base.Add(time.Duration(f.n)*20*time.Millisecond - time.Duration(f.rng.IntN(2000))*time.Millisecond).Truncate(time.Millisecond)
		svc := "svc" + strconv.Itoa(f.rng.IntN(18))
		v := int64(f.rng.IntN(1000))
		f.n++
		w := taskWindow{ts.Truncate(time.Minute), svc}
		a := f.want[w]
		a.n, a.sum = a.n+1, a.sum+v
		f.want[w] = a
		recs = append(recs, &kgo.Record{Topic: f.topic, Partition: f.partition(svc), Key: []byte(svc),
			Value: fmt.Appendf(nil, `{"ts":%q,"service":%q,"v":%d}`, ts.Format(time.RFC3339Nano), svc, v)})
	}
	f.mu.Unlock()
	return f.cl.ProduceSync(ctx, recs...).FirstErr()
}

// flush writes one event per partition two hours after the last, so that
// every real window fires on time.
func (f *taskFeed) flush(ctx context.Context) error {
	f.mu.Lock()
	at := f.base.Add(time.Duration(f.n)*20*time.Millisecond + 2*time.Hour)
	f.mu.Unlock()
	var recs []*kgo.Record
	for p := range f.partitions {
		recs = append(recs, &kgo.Record{Topic: f.topic, Partition: p,
			Value: fmt.Appendf(nil, `{"ts":%q,"service":"flush","v":0}`, at.Format(time.RFC3339Nano))})
	}
	return f.cl.ProduceSync(ctx, recs...).FirstErr()
}

// TestPostgresTasksKill runs tasksKillTest into PostgreSQL with upsert:
// the tasks' truths are in weir_tasks, in the rows' transactions.
func TestPostgresTasksKill(t *testing.T) { postgresTasksKill(t, "") }

// TestPostgresRepartitionTasksKill is TestPostgresTasksKill with the
// stream re-keyed through a 4-partition repartition topic before the
// window: each process runs both halves, the first's truths in the kafka
// sink to the topic, the second's in weir_tasks, and the watermarks cross
// the topic with the records.
func TestPostgresRepartitionTasksKill(t *testing.T) {
	postgresTasksKill(t, fmt.Sprintf("- repartition: { topic: %s, key: service, partitions: 4 }", kafkatest.Name("weir-rp")))
}

func postgresTasksKill(t *testing.T, before string) {
	if testing.Short() {
		t.Skip("kill tests build the weir binary; skipped with -short")
	}
	dsn := testservices.Postgres(t)
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	table, tasks, commits := testservices.Name("weir_tk"), testservices.Name("weir_tk_tasks"), testservices.Name("weir_tk_commits")
	if _, err := db.Exec(context.Background(), `CREATE TABLE `+table+` (window_start timestamptz, window_end timestamptz,
		service text, n bigint, s bigint, firing text, PRIMARY KEY (window_start, service))`); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, tb := range []string{table, tasks, commits} {
			db.Exec(context.Background(), `DROP TABLE IF EXISTS `+tb)
		}
	}()

	sink := fmt.Sprintf("postgres: { dsn: %q, table: %s, upsert_on: [window_start, service], tasks_table: %s, commits_table: %s }", dsn, table, tasks, commits)
	tasksKillTest(t, before, func(*kafkatest.Cluster) (string, func(context.Context) (map[taskWindow]taskAgg, error)) {
		return sink, func(ctx context.Context) (map[taskWindow]taskAgg, error) {
			rows, err := db.Query(ctx, `SELECT window_start, service, n, s FROM `+table)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			got := map[taskWindow]taskAgg{}
			for rows.Next() {
				var w taskWindow
				var a taskAgg
				if err := rows.Scan(&w.start, &w.service, &a.n, &a.sum); err != nil {
					return nil, err
				}
				w.start = w.start.UTC()
				got[w] = a
			}
			return got, rows.Err()
		}
	})
}

// tasksKillPoints arms the processes of tasksKillTest to kill themselves
// inside rebalance callbacks and between the checkpoint save, the sink
// commit and the offset commit, where kills from outside rarely land.
var tasksKillPoints = strings.Join([]string{
	killpoint.CheckpointSaved + "=0.02",
	killpoint.CheckpointCommitted + "=0.02",
	killpoint.KafkaTxnBeforeEnd + "=0.02",
	killpoint.KafkaAssigned + "=0.1",
	killpoint.KafkaRevokeBeforeCheckpoint + "=0.3",
	killpoint.KafkaRevokeBeforeCommit + "=0.3",
}, ",")

// killpointHits lists, in order, the killpoints a process log says its
// runs died at.
func killpointHits(log []byte) []string {
	var out []string
	for _, line := range strings.Split(string(log), "\n") {
		if rest, ok := strings.CutPrefix(line, "weir: killpoint "); ok {
			name, _, _ := strings.Cut(rest, ":")
			out = append(out, name)
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// tasksKillTest is the scale-out kill test: three weir processes
// (separate data_dirs, as on separate machines) in one consumer group read
// a 6-partition topic keyed by service and count per-minute windows into
// one shared sink (sinkYAML, the sinks: entry). Processes are killed with
// SIGKILL at random moments (rebalances included), some stay down past the
// session timeout so their partitions move with their window state, and
// the group is scaled 3 → 2 → 3. At the end read (what the sink holds,
// failing on a (window, service) written twice) must equal a GROUP BY over
// the input, and nothing may be dead-lettered.
// before is operator YAML put before the window ("" for none); setup gets
// the cluster, and returns the sinks: entry and how to read the
// sink.
func tasksKillTest(t *testing.T, before string, setup func(c *kafkatest.Cluster) (sinkYAML string, read func(ctx context.Context) (map[taskWindow]taskAgg, error))) {
	kills := 20
	if s := os.Getenv("WEIR_CRASH_KILLS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			kills = n
		}
	}
	bin := buildWeir(t)
	// A short session timeout, so that partitions of a process kept down
	// move within the test's time.
	c := kafkatest.NewFake(t, kfake.GroupMinSessionTimeout(500*time.Millisecond))
	sinkYAML, read := setup(c)
	const partitions = 6
	feed := &taskFeed{t: t, topic: c.Topic(t, partitions), partitions: partitions,
		base: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(3, 9)), want: map[taskWindow]taskAgg{},
		cl: c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))}
	group := kafkatest.Name("tk")
	root := t.TempDir()
	const procs = 3
	ps := make([]*weirProc, procs)
	for i := range ps {
		dir := filepath.Join(root, strconv.Itoa(i))
		conf := filepath.Join(root, fmt.Sprintf("weir-%d.yaml", i))
		yaml := fmt.Sprintf(`
data_dir: %s
pipelines:
  - name: tasks
    checkpoint_interval: 200ms
    sources:
      - kafka: { brokers: %s, topics: [%s], group: %s, partitioned_by: service, heartbeat_interval: 100ms, session_timeout: 2s, rebalance_timeout: 10s }
    operators:
      - parse: { format: json }
      %s
      - window:
          tumbling: 1m
          event_time: ts
          watermark: 5s
          group_by: [service]
          aggregate: { n: count(), s: sum(v) }
      - filter: 'service != "flush"'
    sinks:
      - %s
    dead_letter:
      file: { path: %s }
`, filepath.Join(dir, "data"), c.BrokerList(), feed.topic, group, before, sinkYAML, filepath.Join(dir, "dead.jsonl"))
		if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		ps[i] = &weirProc{t: t, bin: bin, conf: conf, log: new(lockedBuffer), env: []string{killpoint.Env + "=" + tasksKillPoints}}
	}
	defer func() {
		if t.Failed() {
			for i, p := range ps {
				t.Logf("process %d output:\n%s", i, tail(p.log.bytes(), 4000))
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Input keeps arriving while processes die: 100 events every 20 ms.
	stopFeed, fed := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopFeed:
				fed <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := feed.produce(ctx, 100); err != nil {
				fed <- err
				return
			}
		}
	}()

	down := make([]bool, procs)
	for _, p := range ps {
		p.start()
		defer func() {
			if r := p.current(); r != nil {
				p.kill()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(11, 5))
	moved, scaled := 0, false
	// A process that killed itself at a killpoint is started again at once;
	// one that exited otherwise failed.
	var lastStart time.Time
	revive := func() (started bool) {
		t.Helper()
		for i, p := range ps {
			err, ok := p.exited()
			if !ok {
				continue
			}
			if err == nil || !strings.Contains(err.Error(), "signal: killed") {
				t.Fatalf("process %d exited on its own: %v", i, err)
			}
			p.start()
			started, lastStart = true, time.Now()
		}
		return started
	}
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(150+rng.IntN(500)) * time.Millisecond)
		revive()
		i := rng.IntN(procs)
		if down[i] {
			k--
			continue
		}
		ps[i].kill()
		switch {
		case k == kills/2 && !scaled:
			// Scale in: stay down long enough for the group to move its
			// partitions (3 → 2), then come back (2 → 3) below.
			scaled, moved = true, moved+1
			time.Sleep(4 * time.Second)
		case rng.IntN(4) == 0:
			moved++
			time.Sleep(2500 * time.Millisecond) // past the session timeout
		default:
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		ps[i].start()
	}
	for _, p := range ps {
		p.env = nil // the points are disarmed from the next start on
	}
	close(stopFeed)
	if err := <-fed; err != nil {
		t.Fatalf("feed: %v", err)
	}
	if err := feed.flush(ctx); err != nil {
		t.Fatal(err)
	}
	feed.mu.Lock()
	want, events := feed.want, feed.n
	feed.mu.Unlock()

	var readErr error
	readNow := func() map[taskWindow]taskAgg {
		got, err := read(ctx)
		if err != nil {
			readErr = err
		}
		return got
	}
	equal := func(got map[taskWindow]taskAgg) bool {
		if len(got) != len(want) {
			return false
		}
		for w, a := range want {
			if got[w] != a {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	got := readNow()
	for !equal(got) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		revive()
		got = readNow()
	}
	revive()
	// A process started a moment ago may not handle SIGTERM yet.
	time.Sleep(time.Until(lastStart.Add(2 * time.Second)))
	for i, p := range ps {
		armed := p.current().armed
		if err := p.stop(); err != nil && !(armed && strings.Contains(err.Error(), "signal: killed")) {
			// (A run started with killpoints armed may hit one on its way out.)
			t.Errorf("process %d: graceful stop: %v", i, err)
		}
	}
	if readErr != nil {
		t.Errorf("reading the output: %v", readErr)
	}
	selfKills := map[string]int{}
	for _, p := range ps {
		for _, h := range killpointHits(p.log.bytes()) {
			selfKills[h]++
		}
	}
	t.Logf("%d processes, %d kills from outside (%d kept down past the session timeout, one scale-in 3 → 2 → 3), %d at killpoints %v, %d events, %d windows",
		procs, kills, moved, total(selfKills), selfKills, events, len(want))
	inRebalance := selfKills[killpoint.KafkaAssigned] + selfKills[killpoint.KafkaRevokeBeforeCheckpoint] + selfKills[killpoint.KafkaRevokeBeforeCommit]
	inCommit := selfKills[killpoint.CheckpointSaved] + selfKills[killpoint.CheckpointCommitted] + selfKills[killpoint.KafkaTxnBeforeEnd]
	// Where the points land is chance (a run may see no revoke at all);
	// that they land at all says the processes were armed.
	t.Logf("killpoints hit: %d in rebalance callbacks, %d between checkpoint save, sink commit and offset commit", inRebalance, inCommit)
	if inRebalance+inCommit == 0 {
		t.Errorf("no process hit a killpoint (%s=%s): were they armed?", killpoint.Env, tasksKillPoints)
	}
	wrong, missing := 0, 0
	for w, a := range want {
		g, ok := got[w]
		switch {
		case !ok:
			missing++
		case g != a:
			wrong++
			if wrong <= 5 {
				t.Errorf("window %s %s: n=%d s=%d, GROUP BY gives n=%d s=%d", w.start.Format(time.TimeOnly), w.service, g.n, g.sum, a.n, a.sum)
			}
		}
	}
	for w := range got {
		if _, ok := want[w]; !ok {
			t.Errorf("window %s %s is not in the input", w.start, w.service)
		}
	}
	if wrong > 0 || missing > 0 {
		t.Errorf("%d of %d windows wrong, %d missing", wrong, len(want), missing)
	}
	for i := range ps {
		if b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(i), "dead.jsonl")); err == nil && len(b) > 0 {
			t.Errorf("process %d dead-lettered records: %s", i, tail(b, 500))
		}
	}
}
