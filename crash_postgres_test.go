package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/internal/testservices"
)

// crashTwoProcessesConfig is one of two weir processes of one pipeline
// (scale-out): the same pipeline name and sink, a data_dir of its own, and
// input of its own (a generate seed), into one PostgreSQL table and one
// commits table.
const crashTwoProcessesConfig = `data_dir: %[1]s/data
pipelines:
  - name: scale
    checkpoint_interval: 40ms
    sources:
      - generate: { rate: %[2]d, count: %[3]d, seed: %[4]d }
    sinks:
      - postgres: { dsn: "%[5]s", table: %[6]s, commits_table: %[7]s, columns: { proc: '"%[8]s"', ts: ts } }
`

// TestCrashTwoProcessesOnePostgresTable runs two weir processes of one
// pipeline side by side into one PostgreSQL table, as scale-out does, and
// kills them with SIGKILL at random moments, restarting each until its
// input is done. Their checkpoint ids are counters of their own, and the
// one started later is behind: before commit records carried the
// process's instance, the other's commits deleted its records, and its
// recovery failed or doubled its last epoch. At the end every input record
// of each process is in the table exactly once.
func TestCrashTwoProcessesOnePostgresTable(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	dsn := testservices.Postgres(t)
	bin := crashtest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a recovery retrying for ever fails here
	defer cancel()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(context.Background()) }) // after the drops below (cleanups run last first)
	table, commits := testservices.Name("weir_scale_t"), testservices.Name("weir_scale_commits")
	if _, err := pg.Exec(ctx, "CREATE TABLE "+table+" (proc text NOT NULL, ts timestamptz NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+commits)
	})

	const rate, count = 4000, 6000 // 1.5 s of input per process
	kills := map[string]int{"a": 1, "b": max(crashKills(t)/5, 3)}
	root := t.TempDir()
	var wg sync.WaitGroup
	results := map[string]crashtest.Result{}
	errs := map[string]error{}
	var mu sync.Mutex
	for i, proc := range []string{"a", "b"} { // b starts later, so its checkpoint ids are behind
		dir := filepath.Join(root, proc)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, crashTwoProcessesConfig, dir, rate, count, i+1, dsn, table, commits, proc), 0o644); err != nil {
			t.Fatal(err)
		}
		h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfg, "--quiet"}, Dir: dir, Seed: uint64(i) + 11, Log: t.Logf,
			MinDelay: 150 * time.Millisecond, MaxDelay: 500 * time.Millisecond}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.Run(ctx, kills[proc])
			mu.Lock()
			defer mu.Unlock()
			results[proc], errs[proc] = res, err
		}()
		if i == 0 {
			time.Sleep(400 * time.Millisecond)
		}
	}
	wg.Wait()
	for _, proc := range []string{"a", "b"} {
		if errs[proc] != nil {
			t.Fatalf("process %s: %v", proc, errs[proc])
		}
		if results[proc].Kills < kills[proc] {
			t.Fatalf("process %s: %d kills before its input was done, want %d", proc, results[proc].Kills, kills[proc])
		}
	}
	for _, proc := range []string{"a", "b"} {
		var n, distinct int64
		if err := pg.QueryRow(ctx, "SELECT count(*), count(DISTINCT ts) FROM "+table+" WHERE proc = $1", proc).Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		if n != count || distinct != count {
			t.Errorf("process %s, after %d kills: %d rows, %d distinct, want %d of each (0 lost, 0 doubled)", proc, results[proc].Kills, n, distinct, count)
		}
	}
	var records, instances int64
	if err := pg.QueryRow(ctx, "SELECT count(*), count(DISTINCT instance) FROM "+commits).Scan(&records, &instances); err != nil {
		t.Fatal(err)
	}
	if records != 2 || instances != 2 {
		t.Errorf("commits table keeps %d records of %d instances, want each process's latest: 2 of 2", records, instances)
	}
	t.Logf("2 processes, %d and %d kills in %v and %v: %d records each in one table exactly once",
		results["a"].Kills, results["b"].Kills, results["a"].Elapsed.Round(time.Millisecond), results["b"].Elapsed.Round(time.Millisecond), count)
}
