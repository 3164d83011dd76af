package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testservices"
	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	_ "github.com/weirhq/weir/sources"
)

// newPGTaskSink returns an exactly_once postgres sink on a fresh table,
// with its own tasks and commits tables; all are dropped at the end.
func newPGTaskSink(t testing.TB, tasks, commits string) *pgSink {
	t.Helper()
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, "window_start timestamptz, service text, n bigint")
	t.Cleanup(func() {
		db.Exec(context.Background(), "DROP TABLE IF EXISTS "+tasks)
		db.Exec(context.Background(), "DROP TABLE IF EXISTS "+commits)
	})
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.TasksTable, cfg.CommitsTable = dsn, table, tasks, commits
	s, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, t.TempDir(), "tk/sinks[0]/postgres")
	return s
}

// A claim fences the claims and commits of earlier generations: a zombie
// (the previous owner, still running) can neither claim the task back nor
// commit for it, and its refused commit leaves nothing visible.
func TestPostgresTasksFenceZombies(t *testing.T) {
	ctx := context.Background()
	tasks, commits := testservices.Name("weir_tt"), testservices.Name("weir_tc")
	old := newPGTaskSink(t, tasks, commits)
	c, err := old.ClaimTask(ctx, "logs/0", gen(3), "a")
	if err != nil || c.Found {
		t.Fatalf("first claim: %+v, %v; want not found", c, err)
	}
	tok, err := old.PreCommitTasks(ctx, 1, []pipeline.TaskState{{Task: "logs/0", Offset: 100, States: map[string][]byte{"w": []byte("s1")}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Commit(ctx, tok); err != nil {
		t.Fatalf("commit: %v", err)
	}

	// Another process takes the partition in generation 4.
	cur := newPGTaskSink(t, tasks, commits)
	cur.component = old.component
	c, err = cur.ClaimTask(ctx, "logs/0", gen(4), "b")
	if err != nil || !c.Found || c.Offset != 100 || string(c.States["w"]) != "s1" {
		t.Fatalf("claim in generation 4: %+v, %v; want offset 100 and the state", c, err)
	}
	// The zombie's next commit is refused as a whole.
	tok, err = old.PreCommitTasks(ctx, 2, []pipeline.TaskState{{Task: "logs/0", Offset: 150}})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Commit(ctx, tok); !errors.Is(err, pipeline.ErrFenced) {
		t.Fatalf("zombie commit: %v, want ErrFenced", err)
	}
	// It cannot claim the task back with its old generation either.
	if _, err := old.ClaimTask(ctx, "logs/0", gen(3), "a"); !errors.Is(err, pipeline.ErrFenced) {
		t.Fatalf("zombie claim: %v, want ErrFenced", err)
	}
	// Recovery of the refused epoch discards it instead of failing.
	if err := old.Recover(ctx, tok); err != nil {
		t.Fatalf("recover a fenced epoch: %v", err)
	}
	// The owner commits from the truth it claimed.
	tok, err = cur.PreCommitTasks(ctx, 1, []pipeline.TaskState{{Task: "logs/0", Offset: 120}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.Commit(ctx, tok); err != nil {
		t.Fatalf("owner commit: %v", err)
	}
	c, err = cur.ClaimTask(ctx, "logs/0", gen(5), "b")
	if err != nil || c.Offset != 120 {
		t.Fatalf("truth after the owner's commit: %+v, %v; want offset 120", c, err)
	}
}

// A tasks row that weir did not write is refused with the table's name.
func TestPostgresTasksRefusesForeignRows(t *testing.T) {
	ctx := context.Background()
	tasks, commits := testservices.Name("weir_tt"), testservices.Name("weir_tc")
	s := newPGTaskSink(t, tasks, commits)
	if _, err := s.ClaimTask(ctx, "logs/0", gen(1), "a"); err != nil {
		t.Fatal(err)
	}
	db, _ := pgTestDB(t)
	if _, err := db.Exec(ctx, `UPDATE `+tasks+` SET state = '"not a map"'`); err != nil {
		t.Fatal(err)
	}
	_, err := s.ClaimTask(ctx, "logs/0", gen(2), "a")
	if err == nil || !strings.Contains(err.Error(), tasks) || !strings.Contains(err.Error(), "not a weir task row") {
		t.Fatalf("claim of a foreign row: %v; want a refusal naming %s", err, tasks)
	}
}

// BenchmarkPostgresTaskRecovery measures a task's recovery: the claim
// reads its truth (a window with 100,000 open groups) from PostgreSQL, the
// window restores it, and processes a record.
//
//	go test -run '^$' -bench PostgresTaskRecovery -benchtime 5x ./sinks/
func BenchmarkPostgresTaskRecovery(b *testing.B) {
	ctx := context.Background()
	tasks, commits := testservices.Name("weir_tt"), testservices.Name("weir_tc")
	s := newPGTaskSink(b, tasks, commits)
	cfg, err := pipeline.Default.Load("bench.yaml", []byte(`
pipelines:
  - name: tk
    guarantee: at_least_once
    sources: [ { generate: { count: 1 } } ]
    operators:
      - window: { tumbling: 1m, event_time: ts, watermark: 5s, group_by: [service], aggregate: { n: count(), s: sum(v) } }
    sinks: [ { stdout: {} } ]
`))
	if err != nil {
		b.Fatal(err)
	}
	wcfg := cfg.Pipelines[0].Operators[0].Config.(pipeline.OperatorConfig)
	newWindow := func() pipeline.Operator {
		op, err := wcfg.NewOperator(pipeline.Build{Pipeline: "tk", Component: "tk/operators[0]/window", Now: time.Now})
		if err != nil {
			b.Fatal(err)
		}
		return op
	}
	const groups = 100000
	w := newWindow()
	batch := &pipeline.Batch{}
	base := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for i := range groups {
		r := &pipeline.Record{}
		f := r.SetFields()
		f.Set("ts", base.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano))
		f.Set("service", fmt.Sprintf("svc-%06d", i))
		f.Set("v", int64(i))
		batch.Records = append(batch.Records, r)
	}
	if err := w.Process(ctx, batch); err != nil {
		b.Fatal(err)
	}
	state, err := w.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.ClaimTask(ctx, "logs/0", gen(1), "a"); err != nil {
		b.Fatal(err)
	}
	tok, err := s.PreCommitTasks(ctx, 1, []pipeline.TaskState{{Task: "logs/0", Offset: groups, States: map[string][]byte{"window": state}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		b.Fatal(err)
	}
	g := int64(2)
	for b.Loop() {
		c, err := s.ClaimTask(ctx, "logs/0", gen(g), "b")
		g++
		if err != nil || !c.Found {
			b.Fatalf("claim: %+v %v", c.Found, err)
		}
		op := newWindow()
		if err := op.(pipeline.Snapshotter).Restore(c.States["window"]); err != nil {
			b.Fatal(err)
		}
		r := &pipeline.Record{}
		f := r.SetFields()
		f.Set("ts", base.Add(time.Second).Format(time.RFC3339Nano))
		f.Set("service", "svc-000001")
		f.Set("v", int64(1))
		if err := op.Process(ctx, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(state))/1e6, "state-MB")
}

// gen is a membership in generation g, as claims in these tests use.
func gen(g int64) pipeline.Fence { return pipeline.Fence{Group: "g", Generation: g} }
