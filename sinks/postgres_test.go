package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// pgTestDB connects plain pgx (the independent reader).
func pgTestDB(t testing.TB) (*pgx.Conn, string) {
	t.Helper()
	dsn := testservices.Postgres(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, dsn
}

// pgTestTable creates a table with a unique name from a column list,
// dropped after the test.
func pgTestTable(t testing.TB, db *pgx.Conn, columns string) string {
	t.Helper()
	name := testservices.Name("weir_t")
	if _, err := db.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s (%s)", name, columns)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), "DROP TABLE IF EXISTS "+name) })
	return name
}

func pgTestInt(t testing.TB, db *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// pgTestRecords makes records like window output: window_start (RFC 3339
// text), service, errors, p99, plus extra fields.
func pgTestRecords(from, n int, services ...string) *pipeline.Batch {
	b := &pipeline.Batch{}
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := from; i < from+n; i++ {
		r := &pipeline.Record{}
		fs := r.SetFields()
		fs.Set("window_start", base.Add(time.Duration(i/len(services))*time.Minute).Format(pipeline.TimeLayout))
		fs.Set("service", services[i%len(services)])
		fs.Set("errors", int64(i))
		fs.Set("p99", float64(i)+0.5)
		fs.Set("firing", "on_time")
		b.Records = append(b.Records, r)
	}
	return b
}

func newPGTestSink(t testing.TB, cfg *PostgresConfig, g pipeline.Guarantee, dir, component string) (*pgSink, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, component, 1024, g)
	if dir != "" {
		b.Dir = dir
	}
	s, err := cfg.NewSink(b)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*pgSink), logs
}

func TestPostgresSinkCopyAtLeastOnce(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `id bigserial PRIMARY KEY, window_start timestamptz NOT NULL, service text, errors bigint,
		p99 double precision, meta jsonb, ok boolean, inserted_at timestamptz NOT NULL DEFAULT now()`)
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.MaxBufferedRows = dsn, table, 1000
	s, _ := newPGTestSink(t, cfg, pipeline.AtLeastOnce, "", "test/sinks[0]/postgres")
	recs := pgTestRecords(0, 2500, "api", "web")
	for i, r := range recs.Records {
		r.Fields().Set("meta", map[string]any{"i": int64(i), "tags": []any{"a"}})
		r.Fields().Set("ok", i%2 == 0)
	}
	ctx := context.Background()
	if err := s.Write(ctx, recs); err != nil { // flushes 2000 on the way
		t.Fatal(err)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+table); n != 2000 {
		t.Fatalf("%d rows before Flush, want 2000 (max_buffered_rows 1000)", n)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+table); n != 2500 {
		t.Fatalf("%d rows, want 2500", n)
	}
	// Cross-check with psql: values converted to the column types, id and
	// inserted_at from their defaults.
	out, err := exec.Command("psql", dsn, "-At", "-c", fmt.Sprintf(
		`SELECT count(DISTINCT id), sum(errors), min(window_start) AT TIME ZONE 'UTC', max(p99), count(*) FILTER (WHERE ok),
		        (SELECT meta->>'i' FROM %[1]s WHERE errors = 7), count(*) FILTER (WHERE inserted_at > now() - interval '1 minute')
		 FROM %[1]s`, table)).CombinedOutput()
	if err != nil {
		t.Skipf("psql not usable: %v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "2500|3123750|2024-05-01 12:00:00|2499.5|1250|7|2500"; got != want {
		t.Fatalf("psql says %s, want %s", got, want)
	}
}

func TestPostgresSinkUpsertLastWins(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `window_start timestamptz, service text, errors bigint, p99 double precision, PRIMARY KEY (window_start, service)`)
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.UpsertOn = dsn, table, []string{"window_start", "service"}
	s, _ := newPGTestSink(t, cfg, pipeline.AtLeastOnce, "", "test/sinks[0]/postgres")
	ctx := context.Background()
	// 300 rows over 150 keys (each key twice in one flush: a late re-fire),
	// then the first 100 keys again in a second flush.
	b := pgTestRecords(0, 300, "api", "web")
	for i, r := range b.Records {
		j := i % 150
		r.Fields().Set("window_start", time.Date(2024, 5, 1, 12, j/2, 0, 0, time.UTC).Format(pipeline.TimeLayout))
		r.Fields().Set("service", []string{"api", "web"}[j%2])
	}
	if err := s.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+table); n != 150 {
		t.Fatalf("%d rows, want 150 keys", n)
	}
	if n := pgTestInt(t, db, "SELECT min(errors) FROM "+table); n != 150 {
		t.Fatalf("min(errors) = %d, want 150: the later record of each key wins", n)
	}
	b2 := &pipeline.Batch{Records: b.Records[:100]}
	for _, r := range b2.Records {
		r.Fields().Set("errors", int64(-1))
	}
	if err := s.Write(ctx, b2); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+table+" WHERE errors = -1"); n != 100 {
		t.Fatalf("%d rows updated, want 100", n)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+table); n != 150 {
		t.Fatalf("%d rows after the update, want 150", n)
	}
}

func TestPostgresSinkExactlyOnce(t *testing.T) {
	for _, upsert := range []bool{false, true} {
		t.Run(fmt.Sprintf("upsert=%v", upsert), func(t *testing.T) {
			db, dsn := pgTestDB(t)
			cols := `window_start timestamptz, service text, errors bigint, p99 double precision`
			if upsert {
				cols += `, PRIMARY KEY (window_start, service)`
			}
			table := pgTestTable(t, db, cols)
			component := "test/sinks[0]/" + testservices.Name("pg")
			t.Cleanup(func() {
				_, _ = db.Exec(context.Background(), "DELETE FROM weir_commits WHERE component = $1", component)
			})
			cfg := NewPostgresConfig()
			cfg.DSN, cfg.Table = dsn, table
			if upsert {
				cfg.UpsertOn = []string{"window_start", "service"}
			}
			dir := t.TempDir()
			ctx := context.Background()
			count := func() int64 { return pgTestInt(t, db, "SELECT count(*) FROM "+table) }

			s, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
			if err := s.Recover(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, pgTestRecords(0, 100, "api", "web")); err != nil {
				t.Fatal(err)
			}
			tok1, err := s.PreCommit(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if n := count(); n != 0 {
				t.Fatalf("%d rows visible after PreCommit, want 0", n)
			}
			for i := 0; i < 2; i++ {
				if err := s.Commit(ctx, tok1); err != nil {
					t.Fatal(err)
				}
				if n := count(); n != 100 {
					t.Fatalf("after commit %d: %d rows, want 100", i+1, n)
				}
			}
			if n := pgTestInt(t, db, "SELECT count(*) FROM weir_commits WHERE pipeline = 'test' AND component = $1 AND epoch = 1", component); n != 1 {
				t.Fatalf("weir_commits has %d rows for epoch 1, want 1", n)
			}
			// Checkpoint 2 is pre-committed, then more is written, then a
			// crash before checkpoint 2 completed: recovery from 1
			// discards both.
			if err := s.Write(ctx, pgTestRecords(100, 50, "api", "web")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PreCommit(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, pgTestRecords(150, 10, "api", "web")); err != nil {
				t.Fatal(err)
			}
			s.Close(ctx)
			s2, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
			if err := s2.Recover(ctx, tok1); err != nil {
				t.Fatal(err)
			}
			if n := count(); n != 100 {
				t.Fatalf("after Recover(checkpoint 1): %d rows, want 100", n)
			}
			if st := s2.stage.Staged(); len(st) != 0 {
				t.Fatalf("still staged after recovery: %v", st)
			}
			// Replay of epoch 2, pre-committed; the crash comes after the
			// checkpoint was written but before Commit: Recover(token 2)
			// in a new process commits it, once.
			if err := s2.Write(ctx, pgTestRecords(100, 50, "api", "web")); err != nil {
				t.Fatal(err)
			}
			tok2, err := s2.PreCommit(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			s2.Close(ctx)
			s3, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, dir, component)
			for i := 0; i < 2; i++ { // a crash during recovery: recovered twice
				if err := s3.Recover(ctx, tok2); err != nil {
					t.Fatal(err)
				}
			}
			if n := count(); n != 150 {
				t.Fatalf("after Recover(checkpoint 2): %d rows, want 150", n)
			}
			if n := pgTestInt(t, db, "SELECT count(DISTINCT errors) FROM "+table); n != 150 {
				t.Fatalf("%d distinct records, want 150", n)
			}
			// Commit landed but the process died before deleting the staged
			// file: the epoch is in weir_commits, so committing it again
			// (from the leftover file) adds nothing.
			if err := s3.Write(ctx, pgTestRecords(150, 20, "api", "web")); err != nil {
				t.Fatal(err)
			}
			tok3, _ := s3.PreCommit(ctx, 3)
			var t3 stageToken
			_ = json.Unmarshal(tok3, &t3)
			staged, _ := os.ReadFile(filepath.Join(dir, t3.File))
			if err := s3.Commit(ctx, tok3); err != nil {
				t.Fatal(err)
			}
			_ = os.WriteFile(filepath.Join(dir, t3.File), staged, 0o644)
			if err := s3.Recover(ctx, tok3); err != nil {
				t.Fatal(err)
			}
			if n := count(); n != 170 {
				t.Fatalf("%d rows, want 170", n)
			}
			// Only the latest epoch is kept in weir_commits.
			if n := pgTestInt(t, db, "SELECT count(*) FROM weir_commits WHERE component = $1", component); n != 1 {
				t.Fatalf("weir_commits keeps %d rows for the component, want 1", n)
			}
		})
	}
}

// pgTestTerminate kills the server side of the sink's connection.
func pgTestTerminate(t testing.TB, db *pgx.Conn, component string) {
	t.Helper()
	n := pgTestInt(t, db, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) x`, "weir "+component)
	if n != 1 {
		t.Fatalf("terminated %d backends, want the sink's 1", n)
	}
}

func TestPostgresSinkSurvivesTerminatedBackend(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `window_start timestamptz, service text, errors bigint, p99 double precision`)
	ctx := context.Background()
	t.Run("at_least_once", func(t *testing.T) {
		component := "test/sinks[0]/" + testservices.Name("pg")
		cfg := NewPostgresConfig()
		cfg.DSN, cfg.Table, cfg.MaxReconnectDelay = dsn, table, 100*time.Millisecond
		s, logs := newPGTestSink(t, cfg, pipeline.AtLeastOnce, "", component)
		if err := s.Write(ctx, pgTestRecords(0, 100, "a")); err != nil {
			t.Fatal(err)
		}
		pgTestTerminate(t, db, component)
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush after pg_terminate_backend: %v", err)
		}
		if n := pgTestInt(t, db, "SELECT count(*) FROM "+table); n != 100 {
			t.Fatalf("%d rows, want 100", n)
		}
		if !strings.Contains(logs.String(), "reconnected") {
			t.Fatalf("no reconnect logged:\n%s", logs)
		}
	})
	t.Run("exactly_once", func(t *testing.T) {
		component := "test/sinks[0]/" + testservices.Name("pg")
		t.Cleanup(func() { _, _ = db.Exec(ctx, "DELETE FROM weir_commits WHERE component = $1", component) })
		cfg := NewPostgresConfig()
		cfg.DSN, cfg.Table, cfg.MaxReconnectDelay = dsn, table, 100*time.Millisecond
		s, _ := newPGTestSink(t, cfg, pipeline.ExactlyOnce, "", component)
		before := pgTestInt(t, db, "SELECT count(*) FROM "+table)
		if err := s.Write(ctx, pgTestRecords(0, 100, "b")); err != nil {
			t.Fatal(err)
		}
		tok, err := s.PreCommit(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		pgTestTerminate(t, db, component)
		if err := s.Commit(ctx, tok); err != nil {
			t.Fatalf("Commit after pg_terminate_backend: %v", err)
		}
		if n := pgTestInt(t, db, "SELECT count(*) FROM "+table) - before; n != 100 {
			t.Fatalf("%d rows added, want 100", n)
		}
	})
}

func TestPostgresSinkCreateTableAndColumns(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := testservices.Name("weir_created")
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.CreateTable, cfg.UpsertOn = dsn, table, true, []string{"window_start", "service"}
	s, _ := newPGTestSink(t, cfg, pipeline.AtLeastOnce, "", "test/sinks[0]/postgres")
	ctx := context.Background()
	b := pgTestRecords(0, 10, "api")
	b.Records[0].Fields().Set("tags", []any{"x"})
	if err := s.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := "window_start timestamp with time zone,service text,errors bigint,p99 double precision,firing text,tags jsonb"
	if strings.Join(got, ",") != want {
		t.Fatalf("created columns %s\nwant %s", strings.Join(got, ","), want)
	}
	if n := pgTestInt(t, db, "SELECT count(*) FROM "+table); n != 10 {
		t.Fatalf("%d rows, want 10", n)
	}

	// columns: expressions instead of field names.
	table2 := pgTestTable(t, db, `svc text, doubled bigint, at timestamptz`)
	cfg2 := NewPostgresConfig()
	cfg2.DSN, cfg2.Table = dsn, table2
	cfg2.Columns = pipeline.ExprMap{Names: []string{"svc", "doubled", "at"},
		Exprs: []*pipeline.Expr{pipeline.MustCompileExpr("upper(service)"), pipeline.MustCompileExpr("errors * 2"), pipeline.MustCompileExpr("window_start")}}
	s2, _ := newPGTestSink(t, cfg2, pipeline.AtLeastOnce, "", "test/sinks[1]/postgres")
	if err := s2.Write(ctx, pgTestRecords(0, 4, "api")); err != nil {
		t.Fatal(err)
	}
	if err := s2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pgTestInt(t, db, "SELECT sum(doubled) FROM "+table2+" WHERE svc = 'API'"); n != 12 {
		t.Fatalf("sum(doubled) = %d, want 12", n)
	}
}

func TestPostgresSinkBadValuesAreErrors(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `window_start timestamptz, service text NOT NULL, errors bigint, p99 double precision, PRIMARY KEY (window_start, service)`)
	cfg := NewPostgresConfig()
	cfg.DSN, cfg.Table, cfg.UpsertOn = dsn, table, []string{"window_start", "service"}
	s, _ := newPGTestSink(t, cfg, pipeline.AtLeastOnce, "", "test/sinks[0]/postgres")
	for name, edit := range map[string]func(fs *pipeline.Fields){
		"text into bigint":   func(fs *pipeline.Fields) { fs.Set("errors", "many") },
		"fraction to bigint": func(fs *pipeline.Fields) { fs.Set("errors", 1.5) },
		"not a time":         func(fs *pipeline.Fields) { fs.Set("window_start", "yesterday") },
		"object to float":    func(fs *pipeline.Fields) { fs.Set("p99", map[string]any{"a": int64(1)}) },
		"null key":           func(fs *pipeline.Fields) { fs.Delete("service") },
	} {
		b := pgTestRecords(0, 1, "api")
		edit(b.Records[0].Fields())
		if err := s.Check(b.Records[0]); err == nil || !strings.HasPrefix(err.Error(), "postgres: column") {
			t.Errorf("%s: Check: %v", name, err)
		}
		if err := s.Write(context.Background(), b); err == nil {
			t.Errorf("%s: Write succeeded", name)
		}
	}
	// A raw, never parsed record: only "message", so every column but the
	// key is null, and the null key is refused.
	if err := s.Check(&pipeline.Record{Value: []byte("\x00\xff garbage")}); err == nil {
		t.Error("raw record passed Check")
	}
}

func TestPostgresSinkStartErrors(t *testing.T) {
	db, dsn := pgTestDB(t)
	table := pgTestTable(t, db, `a text, b bigint`)
	for _, tc := range []struct {
		name string
		edit func(c *PostgresConfig)
		want string
	}{
		{"no dsn", func(c *PostgresConfig) { c.DSN = "" }, "dsn is required"},
		{"bad dsn", func(c *PostgresConfig) { c.DSN = "postgres://u:s3cret@127.0.0.1:notaport/x" }, "dsn postgres://xxxxx@127.0.0.1:notaport/x: invalid port"},
		{"nothing listening", func(c *PostgresConfig) { c.DSN = "postgres://u:s3cret@127.0.0.1:1/test?sslmode=disable" }, "connection refused"},
		{"unknown role", func(c *PostgresConfig) { c.DSN = strings.Replace(dsn, "postgres@", "weir_no_such_role:s3cret@", 1) }, `role "weir_no_such_role" does not exist`},
		{"unknown database", func(c *PostgresConfig) { c.DSN = strings.Replace(dsn, "/test", "/weir_no_such_db", 1) }, `database "weir_no_such_db" does not exist`},
		{"missing table", func(c *PostgresConfig) { c.Table = "weir_no_such_table" }, `table "weir_no_such_table" does not exist`},
		{"unknown column", func(c *PostgresConfig) {
			c.Columns = pipeline.ExprMap{Names: []string{"zz"}, Exprs: []*pipeline.Expr{pipeline.MustCompileExpr("1")}}
		}, `column "zz" does not exist`},
		{"upsert key not a column", func(c *PostgresConfig) {
			c.Columns = pipeline.ExprMap{Names: []string{"a"}, Exprs: []*pipeline.Expr{pipeline.MustCompileExpr("1")}}
			c.UpsertOn = []string{"b"}
		}, "upsert_on column"},
		{"missing password_file", func(c *PostgresConfig) { c.PasswordFile = "/nonexistent/pw" }, "password_file"},
		{"bad table name", func(c *PostgresConfig) { c.Table = "a.b.c" }, "want name or schema.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewPostgresConfig()
			cfg.DSN, cfg.Table, cfg.ConnectTimeout = dsn, table, 500*time.Millisecond
			tc.edit(cfg)
			b, logs := testservices.Build(t, "test/sinks[0]/postgres", 10, pipeline.ExactlyOnce)
			s, err := cfg.NewSink(b)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("NewSink succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.HasPrefix(err.Error(), "postgres: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want postgres: ... %s", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), "s3cret") {
				t.Fatal("password leaked")
			}
		})
	}
}

// BenchmarkPostgresSink measures Write+Flush (at_least_once) and
// Write+PreCommit+Commit (exactly_once) of 1024-row batches, with COPY
// (no key) and with upsert_on.
func BenchmarkPostgresSink(b *testing.B) {
	db, dsn := pgTestDB(b)
	for _, g := range []pipeline.Guarantee{pipeline.AtLeastOnce, pipeline.ExactlyOnce} {
		for _, upsert := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/upsert=%v", g, upsert), func(b *testing.B) {
				cols := `window_start timestamptz, service text, errors bigint, p99 double precision`
				if upsert {
					cols += `, PRIMARY KEY (window_start, service)`
				}
				table := pgTestTable(b, db, cols)
				component := "bench/sinks[0]/" + testservices.Name("pg")
				defer db.Exec(context.Background(), "DELETE FROM weir_commits WHERE component = $1", component)
				cfg := NewPostgresConfig()
				cfg.DSN, cfg.Table = dsn, table
				if upsert {
					cfg.UpsertOn = []string{"window_start", "service"}
				}
				s, _ := newPGTestSink(b, cfg, g, "", component)
				ctx := context.Background()
				b.ResetTimer()
				start := time.Now()
				n := 0
				for ckpt := uint64(1); n < b.N; ckpt++ {
					batch := pgTestRecords(n, 1024, "api", "web", "db", "queue")
					if err := s.Write(ctx, batch); err != nil {
						b.Fatal(err)
					}
					if g == pipeline.ExactlyOnce {
						tok, err := s.PreCommit(ctx, ckpt)
						if err != nil {
							b.Fatal(err)
						}
						if err := s.Commit(ctx, tok); err != nil {
							b.Fatal(err)
						}
					} else if err := s.Flush(ctx); err != nil {
						b.Fatal(err)
					}
					n += 1024
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
			})
		}
	}
}

func TestPostgresSinkColumnTypes(t *testing.T) {
	db, dsn := pgTestDB(t)
	enum := testservices.Name("weir_mood")
	if _, err := db.Exec(context.Background(), "CREATE TYPE "+enum+" AS ENUM ('ok', 'sad')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), "DROP TYPE IF EXISTS "+enum+" CASCADE") })
	for _, upsert := range []bool{false, true} {
		t.Run(fmt.Sprintf("upsert=%v", upsert), func(t *testing.T) {
			table := pgTestTable(t, db, `k smallint PRIMARY KEY, u uuid, amount numeric(10,2), mood `+enum+`, addr inet, d date,
				dur interval, raw bytea, js json, flag boolean, r real, ts timestamp`)
			cfg := NewPostgresConfig()
			cfg.DSN, cfg.Table = dsn, table
			if upsert {
				cfg.UpsertOn = []string{"k"}
			}
			s, _ := newPGTestSink(t, cfg, pipeline.AtLeastOnce, "", "test/sinks[0]/postgres")
			r := &pipeline.Record{}
			fs := r.SetFields()
			fs.Set("k", 7.0) // a whole float into smallint
			fs.Set("u", "6f1c2c1e-9a4b-4c3d-8e2f-0a1b2c3d4e5f")
			fs.Set("amount", 12.345)
			fs.Set("mood", "sad")
			fs.Set("addr", "10.1.2.3")
			fs.Set("d", "2024-05-01T23:30:00Z")
			fs.Set("dur", "1 hour 2 minutes")
			fs.Set("raw", "bytes")
			fs.Set("js", []any{int64(1), "two", nil})
			fs.Set("flag", "true")
			fs.Set("r", int64(3))
			fs.Set("ts", int64(1714600000000)) // unix ms
			if err := s.Check(r); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(context.Background(), &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got string
			err := db.QueryRow(context.Background(), `SELECT concat_ws('|', k, u, amount, mood, addr, d, dur, encode(raw, 'escape'), js, flag, r, ts) FROM `+table).Scan(&got)
			if err != nil {
				t.Fatal(err)
			}
			want := `7|6f1c2c1e-9a4b-4c3d-8e2f-0a1b2c3d4e5f|12.35|sad|10.1.2.3|2024-05-01|01:02:00|bytes|[1,"two",null]|t|3|2024-05-01 21:46:40`
			if got != want {
				t.Fatalf("row\n got %s\nwant %s", got, want)
			}
		})
	}
}

type yamlTestNullSource struct{}

func (*yamlTestNullSource) NewSource(pipeline.Build) (pipeline.Source, error) { return nil, nil }

// TestAMQPMQTTNATSPostgresSinksYAML loads the DESIGN.md examples of the amqp, mqtt, nats
// and postgres sinks through the registry, and checks which ones
// exactly_once accepts.
func TestAMQPMQTTNATSPostgresSinksYAML(t *testing.T) {
	reg := pipeline.Default.Clone()
	reg.Register(pipeline.Entry{Kind: pipeline.KindSource, Name: "yaml_test_src", NewConfig: func() any { return &yamlTestNullSource{} }})
	cfg, err := reg.Load("p.yaml", []byte(`pipelines:
  - name: p
    guarantee: at_least_once
    sources: [ { yaml_test_src: {} } ]
    sinks:
      - amqp:     { url: "amqp://guest:guest@127.0.0.1:5672/", exchange: alerts, routing_key: "alert.{{ service }}" }
      - mqtt:     { url: "tcp://127.0.0.1:1883", topic: "devices/{{ device }}/avg", qos: 1 }
      - nats:     { url: "nats://127.0.0.1:4222", subject: alerts }
      - postgres: { dsn: "postgres://127.0.0.1:5432/test", table: errors_per_minute,
                    upsert_on: [window_start, service], columns: { window_start: window_start, service: 'lower(service)' } }
`))
	if err != nil {
		t.Fatal(err)
	}
	sk := cfg.Pipelines[0].Sinks
	a, m, n, p := sk[0].Config.(*AMQPConfig), sk[1].Config.(*MQTTConfig), sk[2].Config.(*NATSConfig), sk[3].Config.(*PostgresConfig)
	if a.RoutingKey.Source != "alert.{{ service }}" || !a.Persistent || a.Mandatory {
		t.Errorf("amqp: %+v", a)
	}
	if m.Topic.Source != "devices/{{ device }}/avg" || m.Retain || m.QoS != 1 {
		t.Errorf("mqtt: %+v", m)
	}
	if n.Subject.Source != "alerts" || n.MaxInFlight != 4096 {
		t.Errorf("nats: %+v", n)
	}
	if p.Table != "errors_per_minute" || len(p.UpsertOn) != 2 || p.Columns.Names[1] != "service" || p.CommitsTable != "weir_commits" {
		t.Errorf("postgres: %+v", p)
	}
	// exactly_once refuses the sinks that cannot commit idempotently.
	for name, ok := range map[string]bool{
		`amqp: { url: "amqp://h/", exchange: x }`:        false,
		`mqtt: { url: "tcp://h:1883", topic: t }`:        false,
		`nats: { url: "nats://h", subject: s }`:          true,
		`postgres: { dsn: "postgres://h/db", table: t }`: true,
	} {
		_, err := reg.Load("p.yaml", []byte("pipelines:\n  - name: p\n    sources: [ { yaml_test_src: {} } ]\n    sinks:\n      - "+name+"\n"))
		if ok != (err == nil) {
			t.Errorf("exactly_once with %s: %v", name, err)
		}
	}
	for _, bad := range []struct{ sink, want string }{
		{`mqtt: { url: "tcp://h:1883", topic: "a/+/b" }`, "wildcard"},
		{`nats: { url: "nats://h", subject: "a.{{ x " }`, "unclosed {{"},
		{`postgres: { dsn: "postgres://u:s3cret@h:x/db", table: t }`, "dsn postgres://xxxxx@"},
		{`postgres: { dsn: "postgres://h/db", table: t, columns: { a: ~ } }`, "columns.a needs an expression"},
		{`postgres: { dsn: "postgres://h/db", table: t, columns: { a: x }, upsert_on: [b] }`, "not one of columns"},
	} {
		_, err := reg.Load("p.yaml", []byte("pipelines:\n  - name: p\n    guarantee: at_least_once\n    sources: [ { yaml_test_src: {} } ]\n    sinks:\n      - "+bad.sink+"\n"))
		if err == nil || !strings.Contains(err.Error(), "p.yaml:") || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v", bad.sink, err)
		}
	}
}
