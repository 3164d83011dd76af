package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// pgTestCommitsTable returns a unique commits table name, dropped after
// the test; with ddl (a column list) it is created first.
func pgTestCommitsTable(t testing.TB, db *pgx.Conn, ddl string) string {
	t.Helper()
	name := testservices.Name("weir_commits_t")
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), "DROP TABLE IF EXISTS "+name) })
	if ddl != "" {
		if _, err := db.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s (%s)", name, ddl)); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// pgTestCommit writes n records numbered from `from` and commits them as
// checkpoint ckpt. With keepStaged it puts the staged file back after the
// commit: the process died after committing, before it removed the file.
func pgTestCommit(t *testing.T, s *pgSink, dir string, from, n int, ckpt uint64, keepStaged bool) []byte {
	t.Helper()
	ctx := context.Background()
	if err := s.Write(ctx, pgTestRecords(from, n, "api", "web")); err != nil {
		t.Fatal(err)
	}
	tok, err := s.PreCommit(ctx, ckpt)
	if err != nil {
		t.Fatal(err)
	}
	var st stageToken
	if err := json.Unmarshal(tok, &st); err != nil {
		t.Fatal(err)
	}
	staged, err := os.ReadFile(filepath.Join(dir, st.File))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatalf("commit checkpoint %d: %v", ckpt, err)
	}
	if keepStaged {
		if err := os.WriteFile(filepath.Join(dir, st.File), staged, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tok
}

// TestPostgresSinkTwoProcessesOneCommitsTable: two sinks with data dirs of
// their own, as two weir processes of one pipeline (scale-out) have, commit
// into one table and one commits table, with the same pipeline and
// component, and checkpoint ids that are their own counters. Each is
// restarted and recovers from its last checkpoint, once after a crash that
// left its staged file behind and once after a clean commit. Neither may
// take the other's commit records for its own, or delete them: every
// record is in the table exactly once, and recovery neither fails nor
// doubles rows.
func TestPostgresSinkTwoProcessesOneCommitsTable(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `window_start timestamptz, service text, errors bigint, p99 double precision`)
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.CommitsTable = dsn, table, pgTestCommitsTable(t, db, "")
	const component = "test/sinks[0]/postgres" // the same in both processes
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	open := func(dir string, tok []byte) *pgSink {
		t.Helper()
		s, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
		// Bounded: a recovery that retries for ever fails the test.
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for range 2 { // a crash during recovery: recovered twice
			if err := s.Recover(rctx, tok); err != nil {
				t.Fatalf("Recover in %s: %v", filepath.Base(dir), err)
			}
		}
		return s
	}
	rows := func() (n, distinct int64) {
		t.Helper()
		if err := db.QueryRow(ctx, "SELECT count(*), count(DISTINCT errors) FROM "+table).Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		return n, distinct
	}
	want := int64(0)
	check := func(when string) {
		t.Helper()
		if n, d := rows(); n != want || d != want {
			t.Fatalf("%s: %d rows, %d distinct, want %d of each", when, n, d, want)
		}
	}

	a, b := open(dirA, nil), open(dirB, nil)
	// A is at checkpoint 1 and 2; B, started earlier, at 10.
	pgTestCommit(t, a, dirA, 0, 100, 1, false)
	tokA := pgTestCommit(t, a, dirA, 100, 100, 2, true)
	tokB := pgTestCommit(t, b, dirB, 1000, 100, 10, false)
	want = 300
	check("after A 1, 2 and B 10")

	// A dies after committing 2, its staged file still there; it restarts.
	a.Close(ctx)
	a = open(dirA, tokA)
	check("after A recovered from checkpoint 2")
	// A goes on past B's checkpoint ids: 20, 21.
	pgTestCommit(t, a, dirA, 200, 100, 20, false)
	tokA = pgTestCommit(t, a, dirA, 300, 100, 21, false)
	want = 500
	check("after A 20, 21")

	// B dies after committing 10 (file removed); it restarts.
	b.Close(ctx)
	b = open(dirB, tokB)
	check("after B recovered from checkpoint 10")
	tokB = pgTestCommit(t, b, dirB, 1100, 100, 11, true)
	want = 600
	check("after B 11")

	// Both restart once more, at the same time.
	a.Close(ctx)
	b.Close(ctx)
	a, b = open(dirA, tokA), open(dirB, tokB)
	check("after both recovered")
	pgTestCommit(t, b, dirB, 1200, 100, 12, false)
	pgTestCommit(t, a, dirA, 400, 100, 22, false)
	want = 800
	check("at the end")

	// Each process keeps its latest record only, under its own instance.
	var records, instances int64
	if err := db.QueryRow(ctx, "SELECT count(*), count(DISTINCT instance) FROM "+cfg.CommitsTable+" WHERE component = $1", component).Scan(&records, &instances); err != nil {
		t.Fatal(err)
	}
	if records != 2 || instances != 2 {
		t.Fatalf("commits table keeps %d records of %d instances, want 2 of 2", records, instances)
	}
}

// pgTestEarlierCommitsDDL is the commits table of a weir before the
// instance column.
const pgTestEarlierCommitsDDL = `pipeline text NOT NULL, component text NOT NULL, epoch bigint NOT NULL, token text NOT NULL,
	rows bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, component, token)`

// TestPostgresSinkMigratesEarlierCommitsTable: a commits table of a weir
// without instances gains the column and the key; the checkpoint that weir
// took recovers without doubling its rows; the earlier version, were it
// still running, can no longer record a commit.
func TestPostgresSinkMigratesEarlierCommitsTable(t *testing.T) {
	db, dsn := pgTestDB(t)
	ctx := context.Background()
	table := pgTestTable(t, db, `window_start timestamptz, service text, errors bigint, p99 double precision`)
	component := "test/sinks[0]/" + testservices.Name("pg")
	count := func() int64 { return pgTestInt(t, db, "SELECT count(*) FROM "+table) }

	// The earlier weir committed checkpoint 7 and died before removing the
	// staged file (staged and committed here into a scratch commits table,
	// whose record is then written as the earlier version had it).
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.CommitsTable = dsn, table, pgTestCommitsTable(t, db, "")
	dir := t.TempDir()
	s0, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
	tok7 := pgTestCommit(t, s0, dir, 0, 100, 7, true)
	s0.Close(ctx)
	st7, _ := parseStageToken(tok7)
	earlier := pgTestCommitsTable(t, db, pgTestEarlierCommitsDDL)
	if _, err := db.Exec(ctx, "INSERT INTO "+earlier+" (pipeline, component, epoch, token, rows) VALUES ('test', $1, 7, $2, 100), ('test', $1, 50, 'another-process', 10)",
		component, st7.ID()); err != nil {
		t.Fatal(err)
	}

	cfg.CommitsTable = earlier
	s1, logs := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
	if !strings.Contains(logs.String(), "migrated commits table") {
		t.Fatalf("no migration logged:\n%s", logs)
	}
	key := pgTestInt(t, db, `SELECT count(*) FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		AND array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) ORDER BY 1) = '{component,instance,pipeline,token}'`, earlier)
	if key != 1 {
		t.Fatal("primary key is not (pipeline, component, instance, token) after the migration")
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+earlier+" WHERE instance = ''"); n != 2 {
		t.Fatalf("%d rows with the empty instance after the migration, want the 2 earlier ones", n)
	}
	if _, err := db.Exec(ctx, "INSERT INTO "+earlier+" (pipeline, component, epoch, token, rows) VALUES ('test', $1, 8, 'old-version', 1)", component); err == nil ||
		!strings.Contains(err.Error(), "instance") {
		t.Fatalf("an insert of the earlier version: %v; want it refused for the missing instance", err)
	}

	for range 2 {
		if err := s1.Recover(ctx, tok7); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 100 {
		t.Fatalf("after recovering the earlier version's checkpoint: %d rows, want 100", n)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+earlier+" WHERE token = $1 AND instance <> ''", st7.ID()); n != 1 {
		t.Fatalf("the recovered checkpoint's record is under this instance %d times, want 1", n)
	}
	tok8 := pgTestCommit(t, s1, dir, 100, 50, 8, false)
	if n := count(); n != 150 {
		t.Fatalf("after checkpoint 8: %d rows, want 150", n)
	}
	s1.Close(ctx)
	s2, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
	if err := s2.Recover(ctx, tok8); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 150 {
		t.Fatalf("after recovering checkpoint 8: %d rows, want 150", n)
	}
	// This process's latest record, and the other process's earlier one,
	// which it never touches.
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+earlier+" WHERE (epoch = 8 AND instance <> '') OR (token = 'another-process' AND instance = '')"); n != 2 {
		t.Fatalf("%d of the 2 expected records left", n)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+earlier); n != 2 {
		t.Fatalf("%d records left, want 2", n)
	}

	// Processes that start together migrate an earlier table once.
	together := pgTestCommitsTable(t, db, pgTestEarlierCommitsDDL)
	cfg.CommitsTable = together
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := testservices.Build(t, component, 10, pipeline.ExactlyOnce)
			s, err := cfg.NewSink(b)
			if err == nil {
				s.Close(ctx)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("sink %d starting with the others: %v", i, err)
		}
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'instance'", together); n != 1 {
		t.Fatalf("%d instance columns after concurrent starts, want 1", n)
	}
}

// TestPostgresSinkRefusesForeignCommitsTable: a table of another shape
// under the commits table's name, or a damaged instance id, stops the sink
// at start with the table (or file) and the reason.
func TestPostgresSinkRefusesForeignCommitsTable(t *testing.T) {
	db, dsn := pgTestDB(t)
	ctx := context.Background()
	table := pgTestTable(t, db, `a text`)
	const cols = `pipeline text NOT NULL, component text NOT NULL, instance text NOT NULL, epoch bigint NOT NULL, token text NOT NULL, rows bigint NOT NULL`
	for _, tc := range []struct{ name, ddl, want string }{
		{"view", "", "it is a view, not a table"},
		{"other columns", "id serial PRIMARY KEY, payload text", "it has no column pipeline"},
		{"wrong type", strings.Replace(cols, "epoch bigint", "epoch integer", 1) + ", PRIMARY KEY (pipeline, component, instance, token)", "column epoch is integer, want bigint"},
		{"earlier with wrong type", strings.Replace(pgTestEarlierCommitsDDL, "rows bigint", "rows text", 1), "column rows is text, want bigint"},
		{"no key", cols, "it has no primary key on (pipeline, component, instance, token)"},
		{"key without instance", cols + ", UNIQUE (pipeline, component, token), PRIMARY KEY (pipeline, component, instance, token)", "does not include instance"},
		{"unwritten column", cols + ", owner text NOT NULL, PRIMARY KEY (pipeline, component, instance, token)", "column owner is NOT NULL without a default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewPostgresConfig()
			cfg.DSN, cfg.Table = dsn, table
			if tc.ddl == "" {
				cfg.CommitsTable = pgTestCommitsTable(t, db, "")
				if _, err := db.Exec(ctx, "CREATE VIEW "+cfg.CommitsTable+" AS SELECT 1 AS pipeline"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _, _ = db.Exec(ctx, "DROP VIEW IF EXISTS "+cfg.CommitsTable) })
			} else {
				cfg.CommitsTable = pgTestCommitsTable(t, db, tc.ddl)
			}
			b, _ := testservices.Build(t, "test/sinks[0]/postgres", 10, pipeline.ExactlyOnce)
			s, err := cfg.NewSink(b)
			if err == nil {
				s.Close(ctx)
				t.Fatal("NewSink succeeded")
			}
			if !strings.HasPrefix(err.Error(), "postgres: commits table \""+cfg.CommitsTable+"\"") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want one naming %s and saying %q", err, cfg.CommitsTable, tc.want)
			}
		})
	}
	t.Run("damaged instance id", func(t *testing.T) {
		cfg := NewPostgresConfig()
		cfg.DSN, cfg.Table, cfg.CommitsTable = dsn, table, pgTestCommitsTable(t, db, "")
		b, _ := testservices.Build(t, "test/sinks[0]/postgres", 10, pipeline.ExactlyOnce)
		path := filepath.Join(b.Dir, "instance-id")
		if err := os.WriteFile(path, []byte("\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := cfg.NewSink(b)
		if err == nil {
			s.Close(ctx)
			t.Fatal("NewSink succeeded")
		}
		if !strings.HasPrefix(err.Error(), "postgres: ") || !strings.Contains(err.Error(), path) {
			t.Fatalf("error %q, want one naming %s", err, path)
		}
	})
}

// TestPostgresSinkCommitOfMissingStagedEpochFails: an epoch whose staged
// file is gone cannot be committed, and saying so is not retried as if the
// connection had been lost (a file error looks like a net.Error).
func TestPostgresSinkCommitOfMissingStagedEpochFails(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `window_start timestamptz, service text, errors bigint, p99 double precision`)
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.CommitsTable = dsn, table, pgTestCommitsTable(t, db, "")
	dir := t.TempDir()
	s, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, "test/sinks[0]/postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Write(ctx, pgTestRecords(0, 10, "api")); err != nil {
		t.Fatal(err)
	}
	tok, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := parseStageToken(tok)
	if err := os.Remove(filepath.Join(dir, st.File)); err != nil {
		t.Fatal(err)
	}
	err = s.Commit(ctx, tok)
	if err == nil || !strings.Contains(err.Error(), "is missing") || ctx.Err() != nil {
		t.Fatalf("Commit of a missing staged epoch: %v (context: %v); want the missing file, at once", err, ctx.Err())
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+cfg.CommitsTable); n != 0 {
		t.Fatalf("%d commit records, want none (rolled back)", n)
	}
}
