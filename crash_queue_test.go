package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/internal/testservices"
)

// TestCrashQueueToPostgresExactlyOnce kills weir with SIGKILL while it moves
// messages from a RabbitMQ queue (a source that cannot replay: every batch
// goes through the ingest WAL before it is acknowledged) into PostgreSQL
// (rows and the checkpoint epoch in one transaction). Messages keep arriving
// during the kills. At the end every message is in the table exactly once.
func TestCrashQueueToPostgresExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	amqpURL := testservices.AMQP(t)
	dsn := testservices.Postgres(t)
	bin := crashtest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	queue := testservices.Name("weir_crash_q")
	table := testservices.Name("weir_crash_t")
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.QueueDelete(queue, false, false, false) })
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	if _, err := pg.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (i bigint NOT NULL, device text, celsius double precision)`, table)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })

	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `data_dir: %s/data
pipelines:
  - name: q2pg
    checkpoint_interval: 50ms
    sources:
      - amqp: { url: "%s", queue: %s }
    operators:
      - parse: { format: json }
    sinks:
      - postgres: { dsn: "%s", table: %s }
`, dir, amqpURL, queue, dsn, table), 0o644)

	const total = 20000
	published := make(chan error, 1)
	go func() { // messages keep arriving while weir is being killed
		for i := range total {
			err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{
				MessageId: fmt.Sprint(i), DeliveryMode: amqp.Persistent,
				Body: fmt.Appendf(nil, `{"i":%d,"device":"d%d","celsius":%d.5}`, i, i%7, i%40),
			})
			if err != nil {
				published <- err
				return
			}
			if i%500 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		published <- nil
	}()

	kills := max(crashKills(t)/2, 5) // WEIR_CRASH_KILLS scales this test too
	rng := rand.New(rand.NewPCG(3, 9))
	logPath := filepath.Join(dir, "runs.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	start := func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--quiet", "--log-format", "text")
		cmd.Dir = dir
		cmd.Stderr = logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	for k := range kills {
		cmd := start()
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d done", k+1)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	// A last run drains the queue; then a graceful stop.
	cmd := start()
	count := func() (n, distinct int) {
		pg.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), count(DISTINCT i) FROM %s`, table)).Scan(&n, &distinct)
		return
	}
	began := time.Now()
	testservices.Eventually(t, 2*time.Minute, "all messages in the table", func() bool {
		n, _ := count()
		return n >= total && time.Since(began) > time.Second // and the last run is up
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		logs, _ := os.ReadFile(logPath)
		t.Fatalf("graceful stop: %v\n%s", err, logs)
	}
	n, distinct := count()
	if n != total || distinct != total {
		var lo, hi, dups int
		pg.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(min(i),-1), coalesce(max(i),-1), count(*) FROM (SELECT i FROM %s GROUP BY i HAVING count(*) > 1) d`, table)).Scan(&lo, &hi, &dups)
		t.Logf("duplicated: %d values of i, from %d to %d", dups, lo, hi)
		logs, _ := os.ReadFile(logPath)
		t.Logf("weir's logs:\n%s", logs)
		t.Fatalf("after %d kills: %d rows, %d distinct, want %d of each (0 lost, 0 duplicated)", kills, n, distinct, total)
	}
	t.Logf("%d kills: %d messages from RabbitMQ in PostgreSQL exactly once", kills, total)
}
