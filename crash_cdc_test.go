package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/internal/testservices"
)

// crashCDCConfig reads a table's changes by logical replication into
// another PostgreSQL table, exactly once.
const crashCDCConfig = `data_dir: %[1]s/data
pipelines:
  - name: cdc
    checkpoint_interval: 50ms
    sources:
      - postgres_cdc: { dsn: "%[2]s", publication: %[3]s, slot: %[3]s, tables: [%[4]s], status_interval: 200ms,
                        max_reconnect_delay: 200ms }
    sinks:
      - postgres: { dsn: "%[2]s", table: %[5]s, commits_table: %[6]s,
                    columns: { id: 'after.id', op: op, v: 'after.v', lsn: lsn } }
`

// TestCrashCDCToPostgres changes a table (inserts in transactions of 1 to
// 400 rows, some of them updated afterwards) while a weir process streams
// its changes into another table and is killed with SIGKILL at random
// moments, again and again. Once every change has arrived, weir is
// stopped: every change is in the output exactly once. The slot keeps the
// changes after the last committed checkpoint because its confirmed flush
// LSN only moves after a checkpoint commits.
func TestCrashCDCToPostgres(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	dsn := testservices.Postgres(t)
	bin := crashtest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(context.Background()) })
	var level string
	if err := pg.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil || level != "logical" {
		if testservices.Required() {
			t.Fatalf("wal_level = %q (%v), want logical (.ci/run sets it)", level, err)
		}
		t.Skipf("wal_level = %q (%v): logical replication is off", level, err)
	}
	pg.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'weir_cdcx_%' AND NOT active")
	name := testservices.Name("weir_cdcx")
	src, out, commits := name+"_src", name+"_out", name+"_commits"
	for _, sql := range []string{
		"CREATE TABLE " + src + " (id int PRIMARY KEY, v int NOT NULL)",
		"CREATE TABLE " + out + " (id int NOT NULL, op text NOT NULL, v int, lsn text NOT NULL)",
	} {
		if _, err := pg.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c := context.Background()
		pg, err := pgx.Connect(c, dsn) // the test's own may have been closed by its deadline
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer pg.Close(c)
		for i := 0; i < 100; i++ {
			pg.Exec(c, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", name)
			if _, err := pg.Exec(c, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", name); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, sql := range []string{"DROP PUBLICATION IF EXISTS " + name, "DROP TABLE IF EXISTS " + src, "DROP TABLE IF EXISTS " + out, "DROP TABLE IF EXISTS " + commits} {
			pg.Exec(c, sql)
		}
	})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, crashCDCConfig, dir, dsn, name, src, out, commits), 0o644); err != nil {
		t.Fatal(err)
	}

	// The changes: made while weir runs and is killed, from a connection
	// of their own.
	const rows = 12000
	kills := crashKills(t)
	// About 60 transactions, spread over the time the kills take, so
	// that most kills land while changes are being made.
	pace := time.Duration(kills) * 400 * time.Millisecond / 60
	wantChanges := make(chan int64, 1)
	writeErr := make(chan error, 1)
	go func() {
		w, err := pgx.Connect(ctx, dsn)
		if err != nil {
			writeErr <- err
			return
		}
		defer w.Close(context.Background())
		// Changes count from the slot's creation, by weir's first start.
		for exists := false; !exists; time.Sleep(20 * time.Millisecond) {
			if err := w.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", name).Scan(&exists); err != nil {
				writeErr <- err
				return
			}
		}
		rng := rand.New(rand.NewPCG(7, 7))
		changes := int64(0)
		for id := 1; id <= rows; {
			n := min(1+rng.IntN(400), rows-id+1)
			if _, err := w.Exec(ctx, "INSERT INTO "+src+" SELECT g, 0 FROM generate_series($1::int, $2::int) g", id, id+n-1); err != nil {
				writeErr <- err
				return
			}
			changes += int64(n)
			if rng.IntN(3) == 0 { // update the transaction's rows: a second change each
				if _, err := w.Exec(ctx, "UPDATE "+src+" SET v = 1 WHERE id BETWEEN $1 AND $2", id, id+n-1); err != nil {
					writeErr <- err
					return
				}
				changes += int64(n)
			}
			id += n
			time.Sleep(time.Duration(rng.Int64N(int64(2 * pace))))
		}
		wantChanges <- changes
		writeErr <- nil
	}()

	var want int64 = -1
	arrived := func() bool {
		if want < 0 {
			select {
			case want = <-wantChanges:
			default:
				return false
			}
		}
		var distinct int64
		if err := pg.QueryRow(ctx, "SELECT count(DISTINCT (id, op)) FROM "+out).Scan(&distinct); err != nil {
			return false
		}
		return distinct >= want
	}
	h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfg, "--quiet"}, Dir: dir, Seed: 17, Log: t.Logf,
		MinDelay: 200 * time.Millisecond, MaxDelay: 700 * time.Millisecond, Finished: arrived}
	res, err := h.Run(ctx, kills)
	if err != nil {
		var n, distinct, ids int64
		pg, _ := pgx.Connect(context.Background(), dsn) // the test's own may have been closed by the deadline
		pg.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT (id, op)), count(DISTINCT id) FROM "+out).Scan(&n, &distinct, &ids)
		var missing, slot string
		pg.QueryRow(context.Background(), "SELECT coalesce(min(s.id)::text, 'none') || '..' || coalesce(max(s.id)::text, 'none') FROM "+src+" s WHERE NOT EXISTS (SELECT 1 FROM "+out+" o WHERE o.id = s.id)").Scan(&missing)
		pg.QueryRow(context.Background(), "SELECT concat_ws(' ', active, restart_lsn, confirmed_flush_lsn, pg_current_wal_lsn(), (SELECT max(lsn::pg_lsn)::text FROM "+out+")) FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&slot)
		t.Fatalf("%v (after %d kills, the output has %d rows, %d distinct changes, %d ids, missing ids %s; slot active/restart/confirmed/current/max out: %s; want %d changes)", err, res.Kills, n, distinct, ids, missing, slot, want)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if res.Kills < kills {
		t.Fatalf("%d kills, want %d", res.Kills, kills)
	}
	var n, distinct, inserts, updates int64
	if err := pg.QueryRow(ctx, "SELECT count(*), count(DISTINCT (id, op)), count(*) FILTER (WHERE op = 'insert' AND v = 0), count(*) FILTER (WHERE op = 'update' AND v = 1) FROM "+out).Scan(&n, &distinct, &inserts, &updates); err != nil {
		t.Fatal(err)
	}
	if n != want || distinct != want || inserts != rows || inserts+updates != want {
		t.Errorf("after %d kills: %d rows, %d distinct changes (%d inserts, %d updates), want %d changes exactly once (%d inserts)",
			res.Kills, n, distinct, inserts, updates, want, rows)
	}
	t.Logf("%d kills in %v: %d changes exactly once", res.Kills, res.Elapsed.Round(time.Millisecond), want)
}
