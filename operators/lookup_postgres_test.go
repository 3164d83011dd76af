package operators

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// TestLookupPostgresTable: the query's rows are the table, refreshed on
// the interval; a refresh that fails keeps the last good table.
func TestLookupPostgresTable(t *testing.T) {
	dsn := testservices.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := testservices.Name("lookup_customers")
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE ` + table + ` (id bigint PRIMARY KEY, name text, tier text, credit numeric(10,2), since timestamptz)`)
	t.Cleanup(func() { conn.Exec(context.Background(), `DROP TABLE IF EXISTS `+table) })
	exec(`INSERT INTO ` + table + ` VALUES (1, 'Ada', 'gold', 12.50, '2026-01-02T03:04:05Z'), (2, 'Bob', NULL, 3, NULL)`)

	c, err := loadOperator(t, "      - lookup: {table: {postgres: {dsn: \""+dsn+"\", key: id, refresh: 50ms, query: \"select id, name, tier, credit, since from "+table+"\"}}, key: customer, fields: {name: name, tier: tier, credit: credit, since: since}, on_miss: dead_letter}\n")
	if err != nil {
		t.Fatal(err)
	}
	b, logs := testservices.Build(t, "p/operators[0]/lookup", 1024, pipeline.ExactlyOnce)
	op, err := c.NewOperator(b)
	if err != nil {
		t.Fatal(err)
	}
	defer op.(*lookup).Close(ctx)
	run := func() string {
		out, dead := lookupRun(t, op, `{"customer":1}`, `{"customer":"2"}`, `{"customer":3}`)
		return strings.Join(out, "\n") + "\n" + strings.Join(dead, "\n")
	}
	want := `{"customer":1,"name":"Ada","tier":"gold","credit":12.5,"since":"2026-01-02T03:04:05.000Z"}
{"customer":"2","name":"Bob","tier":null,"credit":3,"since":null}
lookup_miss: lookup: no row for key "3"`
	if got := run(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	exec(`UPDATE ` + table + ` SET tier = 'silver' WHERE id = 2`)
	exec(`INSERT INTO ` + table + ` VALUES (3, 'Cy', 'bronze', 0, NULL)`)
	want2 := `{"customer":1,"name":"Ada","tier":"gold","credit":12.5,"since":"2026-01-02T03:04:05.000Z"}
{"customer":"2","name":"Bob","tier":"silver","credit":3,"since":null}
{"customer":3,"name":"Cy","tier":"bronze","credit":0,"since":null}
`
	testservices.Eventually(t, 5*time.Second, "the refreshed table is used", func() bool { return run() == want2 })
	// The query fails from now on: the last good table stays.
	exec(`ALTER TABLE ` + table + ` RENAME COLUMN tier TO level`)
	testservices.Eventually(t, 5*time.Second, "the failed refresh is logged", func() bool {
		return strings.Contains(logs.String(), "reloading the table failed; keeping the last good one")
	})
	if got := run(); got != want2 {
		t.Fatalf("after a failed refresh:\n%s", got)
	}
	if !strings.Contains(logs.String(), "tier") {
		t.Fatalf("the log does not say why: %s", logs.String())
	}
}

// TestLookupPostgresStartErrors: a query without the key column, or one
// that fails, stops the start with the reason.
func TestLookupPostgresStartErrors(t *testing.T) {
	dsn := testservices.Postgres(t)
	for _, tc := range []struct{ query, want string }{
		{"select 1 as other", `the query has no column "id", the key (it has other)`},
		{"select id from no_such_table_here", `relation "no_such_table_here" does not exist`},
	} {
		c, err := loadOperator(t, "      - lookup: {table: {postgres: {dsn: \""+dsn+"\", key: id, query: \""+tc.query+"\"}}, key: id}\n")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := testservices.Build(t, "p/operators[0]/lookup", 1024, pipeline.ExactlyOnce)
		start := time.Now()
		op, err := c.NewOperator(b)
		if err == nil {
			op.(*lookup).Close(context.Background())
			t.Fatalf("%s: started", tc.query)
		}
		if !strings.Contains(err.Error(), tc.want) || time.Since(start) > 5*time.Second {
			t.Fatalf("%s: %v after %v; want %q at once", tc.query, err, time.Since(start), tc.want)
		}
	}
}
