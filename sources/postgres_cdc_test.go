package sources

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// cdcTestPrefix starts the names of every slot, publication and table the
// CDC tests create, so that leftovers of a killed run can be found.
const cdcTestPrefix = "weir_cdct"

func TestPostgresCDCConfigValidate(t *testing.T) {
	ok := func() *PostgresCDCConfig {
		c := NewPostgresCDCConfig()
		c.DSN = "postgres://u@127.0.0.1:5432/db"
		return c
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	parts := NewPostgresCDCConfig()
	parts.Host, parts.Port, parts.User, parts.Database = "127.0.0.1", 5432, "u", "db"
	if err := parts.Validate(); err != nil {
		t.Fatalf("host/port/user/database refused: %v", err)
	}
	cfg, err := parts.pgxConfig("c")
	if err != nil || cfg.Host != "127.0.0.1" || cfg.Port != 5432 || cfg.User != "u" || cfg.Database != "db" {
		t.Fatalf("pgxConfig from parts = %+v, %v", cfg, err)
	}
	over := ok()
	over.Database, over.Port = "other", 6543
	if cfg, err := over.pgxConfig("c"); err != nil || cfg.Database != "other" || cfg.Port != 6543 {
		t.Fatalf("parts over a URL DSN: %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*PostgresCDCConfig)
		want string
	}{
		{"no dsn", func(c *PostgresCDCConfig) { c.DSN = "" }, "dsn"},
		{"bad slot", func(c *PostgresCDCConfig) { c.Slot = "Bad-Slot" }, "slot"},
		{"long slot", func(c *PostgresCDCConfig) { c.Slot = strings.Repeat("a", 64) }, "slot"},
		{"bad publication", func(c *PostgresCDCConfig) { c.Publication = "pub; drop" }, "publication"},
		{"bad table", func(c *PostgresCDCConfig) { c.Tables = []string{"a.b.c"} }, "table"},
		{"negative", func(c *PostgresCDCConfig) { c.Linger = -1 }, "negative"},
		{"bad port", func(c *PostgresCDCConfig) { c.Port = 70000 }, "port"},
		{"tls", func(c *PostgresCDCConfig) { c.TLS = &pipeline.TLSOptions{CertFile: "x"} }, "key_file"},
	} {
		c := ok()
		tc.mod(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

func TestPostgresCDCDecodeValues(t *testing.T) {
	d := newCDCDecoder()
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	for _, tc := range []struct {
		oid  uint32
		text string
		want any
	}{
		{cdcOIDBool, "t", true},
		{cdcOIDBool, "f", false},
		{cdcOIDInt2, "-7", int64(-7)},
		{cdcOIDInt4, "2147483647", int64(2147483647)},
		{cdcOIDInt8, "9223372036854775807", int64(math.MaxInt64)},
		{cdcOIDFloat8, "1.5", 1.5},
		{cdcOIDFloat4, "-Infinity", math.Inf(-1)},
		{cdcOIDNumeric, "12345678901234567890.000000001", "12345678901234567890.000000001"},
		{cdcOIDTimestamptz, "2026-03-04 06:06:07.123456+01", ts},
		{cdcOIDTimestamp, "2026-03-04 05:06:07.123456", ts},
		{cdcOIDDate, "2026-03-04", time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)},
		{cdcOIDTimestamptz, "infinity", "infinity"},
		{cdcOIDJSONB, `{"a": 1, "b": [2.5, "x"], "c": null}`, map[string]any{"a": int64(1), "b": []any{2.5, "x"}, "c": nil}},
		{1007, "{1,2,NULL}", []any{int64(1), int64(2), nil}}, // int4[]
		{1009, `{a,"b c"}`, []any{"a", "b c"}},               // text[]
		{25, "plain", "plain"},
		{2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, // uuid stays text
		{99999, "some enum", "some enum"},
		{cdcOIDInt4, "not a number", "not a number"}, // kept, never lost
	} {
		got := d.decode(tc.oid, []byte(tc.text))
		g, _ := json.Marshal(fmt.Sprintf("%#v", got))
		w, _ := json.Marshal(fmt.Sprintf("%#v", tc.want))
		if gt, ok := got.(time.Time); ok {
			if wt, ok := tc.want.(time.Time); !ok || !gt.Equal(wt) || gt.Location() != time.UTC {
				t.Errorf("decode(%d, %q) = %v, want %v (UTC)", tc.oid, tc.text, got, tc.want)
			}
			continue
		}
		if string(g) != string(w) {
			t.Errorf("decode(%d, %q) = %#v, want %#v", tc.oid, tc.text, got, tc.want)
		}
	}
}

func TestPostgresCDCPosition(t *testing.T) {
	for _, p := range []cdcPosition{
		{LSN: 0x16B3748},
		{LSN: 0x100000000, Txn: 0x100000100, Skip: 1000},
		{LSN: 0x2000, Snapshot: true, Skip: 5},
	} {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q cdcPosition
		if err := json.Unmarshal(b, &q); err != nil || q != p {
			t.Errorf("round trip of %+v: %s -> %+v, %v", p, b, q, err)
		}
	}
	if b, _ := json.Marshal(cdcPosition{LSN: 0x16B3748}); string(b) != `{"lsn":"0/16B3748"}` {
		t.Errorf("position JSON = %s, want LSNs in PostgreSQL notation", b)
	}
	var q cdcPosition
	for _, bad := range []string{`{"lsn":"x"}`, `{"lsn":"0/1","skip":3}`, `{"lsn":"0/1","txn":"0/2","skip":-1}`} {
		if err := json.Unmarshal([]byte(bad), &q); err == nil {
			t.Errorf("position %s accepted", bad)
		}
	}
	c := cdcChunk{recs: make([]*pipeline.Record, 3), base: cdcPosition{LSN: 10, Txn: 20, Skip: 4}, end: 30}
	if got := c.after(2); got != (cdcPosition{LSN: 10, Txn: 20, Skip: 6}) {
		t.Errorf("after 2 of 3 = %+v", got)
	}
	if got := c.after(3); got != (cdcPosition{LSN: 30}) {
		t.Errorf("after the whole chunk = %+v, want the transaction's end", got)
	}
}

// cdcTestDB is a PostgreSQL connection with a table, publication and slot
// of the test's own, all dropped when the test ends.
type cdcTestDB struct {
	dsn, table, pub, slot string
	conn                  *pgx.Conn
}

func newCDCTestDB(t testing.TB, columns string) *cdcTestDB {
	t.Helper()
	dsn := testservices.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil || level != "logical" {
		conn.Close(ctx)
		msg := fmt.Sprintf("PostgreSQL wal_level = %q (%v); .ci/run sets logical", level, err)
		if testservices.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cdcDropLeftovers(t, conn)
	name := testservices.Name(cdcTestPrefix)
	db := &cdcTestDB{dsn: dsn, table: name + "_t", pub: name, slot: name, conn: conn}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		db.dropSlot(t)
		conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+db.pub)
		conn.Exec(ctx, "DROP TABLE IF EXISTS "+db.table)
		conn.Close(ctx)
	})
	db.exec(t, "CREATE TABLE "+db.table+" ("+columns+")")
	return db
}

// cdcDropLeftovers drops the inactive slots and the publications that
// earlier runs of these tests left behind (a test binary that was killed
// runs no cleanup).
func cdcDropLeftovers(t testing.TB, conn *pgx.Conn) {
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active", cdcTestPrefix+"%"); err != nil {
		t.Logf("drop leftover slots: %v", err)
	}
}

func (db *cdcTestDB) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := db.conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// dropSlot ends whatever streams from the slot, then drops it.
func (db *cdcTestDB) dropSlot(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 100; i++ {
		db.conn.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", db.slot)
		_, err := db.conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", db.slot)
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("could not drop slot %s", db.slot)
}

// confirmed returns the slot's confirmed flush LSN.
func (db *cdcTestDB) confirmed(t *testing.T) pglogrepl.LSN {
	t.Helper()
	var s string
	if err := db.conn.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", db.slot).Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func (db *cdcTestDB) config() *PostgresCDCConfig {
	c := NewPostgresCDCConfig()
	c.DSN, c.Publication, c.Slot, c.Tables = db.dsn, db.pub, db.slot, []string{db.table}
	c.StatusInterval = 200 * time.Millisecond
	c.MaxReconnectDelay = 200 * time.Millisecond
	return c
}

func newCDCTestSource(t testing.TB, c *PostgresCDCConfig, batch int, pos []byte) (*cdcSource, *testservices.Logs) {
	t.Helper()
	b, logs := testservices.Build(t, "test/sources[0]/postgres_cdc", batch, pipeline.ExactlyOnce)
	src, err := c.NewSource(b)
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*cdcSource)
	if pos != nil {
		if err := s.Seek(context.Background(), pos); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, logs
}

// cdcRow is a record reduced to what the tests compare.
func cdcRow(r *pipeline.Record) string {
	f := r.Fields()
	b := pipeline.AppendJSONValue(nil, f.Get("before"))
	a := pipeline.AppendJSONValue(nil, f.Get("after"))
	return fmt.Sprintf("%s %s %s", f.Get("op"), b, a)
}

func TestPostgresCDCStreamsTypedChanges(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY, name text, ok boolean, score float8, at timestamptz, amount numeric(20,4), doc jsonb, tags int[], u uuid")
	db.exec(t, "ALTER TABLE "+db.table+" REPLICA IDENTITY FULL")
	src, _ := newCDCTestSource(t, db.config(), 100, nil)
	start := db.confirmed(t)
	db.exec(t, "INSERT INTO "+db.table+" VALUES (1, 'a', true, 1.5, '2026-01-02 03:04:05.5+00', 12.3400, '{\"k\": [1, \"x\"]}', '{1,2}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')")
	db.exec(t, "UPDATE "+db.table+" SET name = 'b', ok = NULL WHERE id = 1")
	db.exec(t, "DELETE FROM "+db.table+" WHERE id = 1")
	recs, acks := testservices.Read(t, src, 3, 10*time.Second)
	if len(recs) != 3 {
		t.Fatalf("got %d records, want 3", len(recs))
	}
	full := `{"amount":"12.3400","at":"2026-01-02T03:04:05.500Z","doc":{"k":[1,"x"]},"id":1,"name":"a","ok":true,"score":1.5,"tags":[1,2],"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}`
	updated := strings.Replace(strings.Replace(full, `"name":"a"`, `"name":"b"`, 1), `"ok":true`, `"ok":null`, 1)
	want := []string{"insert null " + full, "update " + full + " " + updated, "delete " + updated + " null"}
	for i, r := range recs {
		if got := cdcRow(r); got != want[i] {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want[i])
		}
		f := r.Fields()
		if f.Get("table") != "public."+db.table {
			t.Errorf("record %d: table = %v, want public.%s", i, f.Get("table"), db.table)
		}
		lsn, err := pglogrepl.ParseLSN(fmt.Sprint(f.Get("lsn")))
		if err != nil || lsn < start {
			t.Errorf("record %d: lsn %v (%v), want one at or after the slot's start %s", i, f.Get("lsn"), err, start)
		}
		if ct, ok := f.Get("commit_time").(time.Time); !ok || !ct.Equal(r.Time) || time.Since(ct) > time.Minute {
			t.Errorf("record %d: commit_time %v, event time %v: want the commit time as both", i, f.Get("commit_time"), r.Time)
		}
		if _, ok := f.Get("xid").(int64); !ok {
			t.Errorf("record %d: xid %#v, want an int64", i, f.Get("xid"))
		}
	}
	// The slot is not confirmed before the checkpoint commits (the acks).
	time.Sleep(600 * time.Millisecond)
	if got := db.confirmed(t); got != start {
		t.Fatalf("confirmed flush LSN moved to %s before any ack (start %s)", got, start)
	}
	testservices.Ack(t, acks)
	var pos cdcPosition
	p, _ := src.Position()
	json.Unmarshal(p, &pos)
	testservices.Eventually(t, 5*time.Second, "confirmed flush LSN reaches the acknowledged position", func() bool { return db.confirmed(t) >= pos.LSN })
}

func TestPostgresCDCDefaultIdentityKeepsKeyOnly(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY, name text, big text")
	src, _ := newCDCTestSource(t, db.config(), 100, nil)
	long := strings.Repeat("x", 200000) // TOASTed, and not sent on an update that leaves it
	db.exec(t, "INSERT INTO "+db.table+" VALUES (1, 'a', $1)", long)
	db.exec(t, "UPDATE "+db.table+" SET name = 'b' WHERE id = 1")
	db.exec(t, "UPDATE "+db.table+" SET id = 2 WHERE id = 1")
	db.exec(t, "DELETE FROM "+db.table)
	recs, _ := testservices.Read(t, src, 4, 10*time.Second)
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 4", len(recs))
	}
	upd := recs[1].Fields()
	if upd.Get("before") != nil {
		t.Errorf("update under REPLICA IDENTITY DEFAULT: before = %v, want null", upd.Get("before"))
	}
	after := upd.Get("after").(map[string]any)
	if _, has := after["big"]; has {
		t.Errorf("unchanged TOAST column big is in after (as %T), want it left out", after["big"])
	}
	if u, _ := json.Marshal(upd.Get("unchanged")); string(u) != `["big"]` {
		t.Errorf("unchanged = %s, want [\"big\"]", u)
	}
	if got := cdcRow(recs[2]); got != `update {"id":1} {"big":"`+long+`","id":2,"name":"b"}` && !strings.HasPrefix(got, `update {"id":1} `) {
		t.Errorf("key change: %.80s, want before with the old key only", got)
	}
	if got := cdcRow(recs[3]); got != `delete {"id":2} null` {
		t.Errorf("delete: %s, want before with the key only", got)
	}
}

func TestPostgresCDCSnapshotThenStream(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY, v text")
	db.exec(t, "INSERT INTO "+db.table+" SELECT g, 'old' FROM generate_series(1, 2500) g")
	c := db.config()
	c.Snapshot = true
	src, _ := newCDCTestSource(t, c, 1000, nil)
	// Changes made while the snapshot is read go to the stream, not to it.
	recs, _ := testservices.Read(t, src, 1, 10*time.Second)
	db.exec(t, "UPDATE "+db.table+" SET v = 'new' WHERE id = 1")
	db.exec(t, "INSERT INTO "+db.table+" VALUES (2501, 'new')")
	more, _ := testservices.Read(t, src, 2502-len(recs), 10*time.Second)
	recs = append(recs, more...)
	if len(recs) != 2502 {
		t.Fatalf("got %d records, want 2500 snapshot rows and 2 changes", len(recs))
	}
	seen := map[int64]bool{}
	for i, r := range recs[:2500] {
		f := r.Fields()
		a := f.Get("after").(map[string]any)
		if f.Get("op") != "snapshot" || a["v"] != "old" {
			t.Fatalf("record %d: %s, want a snapshot row of the old value", i, cdcRow(r))
		}
		seen[a["id"].(int64)] = true
	}
	if len(seen) != 2500 {
		t.Errorf("snapshot has %d distinct ids, want 2500", len(seen))
	}
	if got := cdcRow(recs[2500]); got != `update null {"id":1,"v":"new"}` {
		t.Errorf("first streamed change: %s", got)
	}
	if got := cdcRow(recs[2501]); got != `insert null {"id":2501,"v":"new"}` {
		t.Errorf("second streamed change: %s", got)
	}
}

// TestPostgresCDCReplaysFromPosition restarts the source at positions it
// handed out, in the middle of a transaction too, and checks that what
// follows is exactly the rest: nothing lost, nothing twice.
func TestPostgresCDCReplaysFromPosition(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY")
	c := db.config()
	src, _ := newCDCTestSource(t, c, 1000, nil)
	db.exec(t, "INSERT INTO "+db.table+" SELECT generate_series(1, 2500)") // one transaction, 3 batches
	db.exec(t, "INSERT INTO "+db.table+" VALUES (2501)")
	b1, ack1 := testservices.ReadBatch(t, src, 10*time.Second)
	if len(b1.Records) != 1000 {
		t.Fatalf("first batch has %d records, want 1000 (the batch size)", len(b1.Records))
	}
	mid, _ := src.Position()
	var p cdcPosition
	json.Unmarshal(mid, &p)
	if p.Txn == 0 || p.Skip != 1000 {
		t.Fatalf("position inside the transaction = %s, want its commit LSN and skip 1000", mid)
	}
	ack1(context.Background())
	src.Close(context.Background())

	// A restart at the position: the transaction again, less its first 1000.
	src2, _ := newCDCTestSource(t, c, 1000, mid)
	recs, _ := testservices.Read(t, src2, 1501, 10*time.Second)
	if len(recs) != 1501 {
		t.Fatalf("after the restart: %d records, want 1501", len(recs))
	}
	for i, r := range recs {
		if id := r.Fields().Get("after").(map[string]any)["id"]; id != int64(1001+i) {
			t.Fatalf("after the restart, record %d has id %v, want %d", i, id, 1001+i)
		}
	}
	time.Sleep(500 * time.Millisecond) // status updates every 200ms
	if got := db.confirmed(t); got > p.LSN {
		t.Errorf("confirmed flush LSN %s is past the acknowledged %s", got, p.LSN)
	}
	end, _ := src2.Position()
	src2.Close(context.Background())
	db.exec(t, "INSERT INTO "+db.table+" VALUES (2502)")
	src3, _ := newCDCTestSource(t, c, 1000, end)
	recs, _ = testservices.Read(t, src3, 1, 10*time.Second)
	if len(recs) != 1 || cdcRow(recs[0]) != `insert null {"id":2502}` {
		t.Fatalf("restart at the end: %d records, first %v; want only the new insert", len(recs), recs)
	}
}

func TestPostgresCDCAlterTableMidStream(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY, v int")
	src, logs := newCDCTestSource(t, db.config(), 100, nil)
	db.exec(t, "INSERT INTO "+db.table+" VALUES (1, 10)")
	db.exec(t, "ALTER TABLE "+db.table+" ADD COLUMN note text DEFAULT 'n'")
	db.exec(t, "INSERT INTO "+db.table+" VALUES (2, 20, 'x')")
	db.exec(t, "ALTER TABLE "+db.table+" ALTER COLUMN v TYPE text")
	db.exec(t, "INSERT INTO "+db.table+" VALUES (3, 'thirty', 'y')")
	db.exec(t, "ALTER TABLE "+db.table+" DROP COLUMN note")
	db.exec(t, "INSERT INTO "+db.table+" VALUES (4, 'forty')")
	recs, _ := testservices.Read(t, src, 4, 10*time.Second)
	want := []string{
		`insert null {"id":1,"v":10}`,
		`insert null {"id":2,"note":"x","v":20}`,
		`insert null {"id":3,"note":"y","v":"thirty"}`,
		`insert null {"id":4,"v":"forty"}`,
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if got := cdcRow(r); got != want[i] {
			t.Errorf("record %d: %s, want %s", i, got, want[i])
		}
	}
	if !strings.Contains(logs.String(), "table changed") {
		t.Errorf("no log line about the changed table:\n%s", logs)
	}
}

func TestPostgresCDCSlotDroppedWhileRunning(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY")
	src, _ := newCDCTestSource(t, db.config(), 100, nil)
	db.exec(t, "INSERT INTO "+db.table+" VALUES (1)")
	if recs, _ := testservices.Read(t, src, 1, 10*time.Second); len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	db.dropSlot(t)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var b pipeline.Batch
		_, err := src.Read(context.Background(), &b)
		if err != nil {
			if !strings.Contains(err.Error(), "no longer exists") || !strings.Contains(err.Error(), db.slot) {
				t.Fatalf("error %q does not say the slot is gone", err)
			}
			return
		}
		if len(b.Records) > 0 {
			t.Fatalf("records after the slot was dropped: %v", cdcRow(b.Records[0]))
		}
	}
	t.Fatal("no error within 15s after the slot was dropped")
}

func TestPostgresCDCMissingSlotAtCheckpointIsRefused(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY")
	src, _ := newCDCTestSource(t, db.config(), 100, []byte(`{"lsn":"0/1000"}`))
	var b pipeline.Batch
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		_, err := src.Read(ctx, &b)
		if err != nil {
			if !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "0/1000") {
				t.Fatalf("error %q does not name the missing slot and the checkpoint's LSN", err)
			}
			var n int
			db.conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", db.slot).Scan(&n)
			if n != 0 {
				t.Errorf("a slot was created over the gap")
			}
			return
		}
	}
	t.Fatal("no error for a checkpoint whose slot is missing")
}

func TestPostgresCDCReconnectsAfterCut(t *testing.T) {
	db := newCDCTestDB(t, "id int PRIMARY KEY")
	proxy := testservices.StartProxy(t, db.dsn)
	c := db.config()
	c.DSN = proxy.URL(db.dsn)
	src, logs := newCDCTestSource(t, c, 1000, nil)
	db.exec(t, "INSERT INTO "+db.table+" SELECT generate_series(1, 2500)")
	var ids []int64
	b, _ := testservices.ReadBatch(t, src, 10*time.Second)
	for _, r := range b.Records {
		ids = append(ids, r.Fields().Get("after").(map[string]any)["id"].(int64))
	}
	proxy.Cut() // in the middle of the transaction
	db.exec(t, "INSERT INTO "+db.table+" SELECT generate_series(2501, 3000)")
	recs, _ := testservices.Read(t, src, 3000-len(ids), 20*time.Second)
	for _, r := range recs {
		ids = append(ids, r.Fields().Get("after").(map[string]any)["id"].(int64))
	}
	if len(ids) != 3000 {
		t.Fatalf("got %d records, want 3000", len(ids))
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("record %d has id %d, want %d (lost or doubled across the reconnect)", i, id, i+1)
		}
	}
	if !strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("no reconnect logged:\n%s", logs)
	}
}
