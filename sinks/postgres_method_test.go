package sinks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirhq/weir/internal/testservices"
)

// BenchmarkPostgresBulkMethods compares, with plain pgx and no weir code,
// the ways to write a 1024-row batch of 5 columns in one transaction, to
// choose the sink's bulk path:
//
//   - copy: COPY into the table (no upsert);
//   - insert: one multi-row INSERT ... VALUES (no upsert);
//   - copy_upsert: COPY into a temp table, then INSERT ... SELECT DISTINCT
//     ON (key) ... ON CONFLICT DO UPDATE;
//   - insert_upsert: one multi-row INSERT ... ON CONFLICT DO UPDATE (rows
//     de-duplicated by key beforehand, as Postgres requires).
//
// Half of the upsert keys already exist (updates), half are new.
func BenchmarkPostgresBulkMethods(b *testing.B) {
	dsn := testservices.Postgres(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	cols := []string{"k", "ts", "service", "n", "v"}
	mkRows := func(base int) [][]any {
		rows := make([][]any, 1024)
		now := time.Now().UTC()
		for i := range rows {
			rows[i] = []any{int64(base + i), now, "svc-" + fmt.Sprint(i%7), int64(i), float64(i) * 1.5}
		}
		return rows
	}
	for _, method := range []string{"copy", "insert", "copy_upsert", "insert_upsert"} {
		b.Run(method, func(b *testing.B) {
			table := testservices.Name("weir_bench")
			if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (k bigint PRIMARY KEY, ts timestamptz, service text, n bigint, v double precision)`, table)); err != nil {
				b.Fatal(err)
			}
			defer conn.Exec(ctx, "DROP TABLE "+table)
			tmp := table + "_tmp"
			if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s ON COMMIT DELETE ROWS AS SELECT * FROM %s WITH NO DATA; ALTER TABLE %s ADD COLUMN weir_seq bigint`, tmp, table, tmp)); err != nil {
				b.Fatal(err)
			}
			defer conn.Exec(ctx, "DROP TABLE "+tmp)
			b.ResetTimer()
			start := time.Now()
			n := 0
			for i := 0; n < b.N; i++ {
				base := i * 512 // half the keys of the previous batch again
				rows := mkRows(base)
				if !strings.Contains(method, "upsert") {
					rows = mkRows(i * 1024)
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				switch method {
				case "copy":
					_, err = tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
				case "insert", "insert_upsert":
					var sb strings.Builder
					fmt.Fprintf(&sb, "INSERT INTO %s (k, ts, service, n, v) VALUES ", table)
					args := make([]any, 0, len(rows)*5)
					for j, r := range rows {
						if j > 0 {
							sb.WriteByte(',')
						}
						p := j * 5
						fmt.Fprintf(&sb, "($%d,$%d,$%d,$%d,$%d)", p+1, p+2, p+3, p+4, p+5)
						args = append(args, r...)
					}
					if method == "insert_upsert" {
						sb.WriteString(" ON CONFLICT (k) DO UPDATE SET ts = EXCLUDED.ts, service = EXCLUDED.service, n = EXCLUDED.n, v = EXCLUDED.v")
					}
					_, err = tx.Exec(ctx, sb.String(), args...)
				case "copy_upsert":
					seq := make([][]any, len(rows))
					for j, r := range rows {
						seq[j] = append(r[:5:5], int64(j))
					}
					if _, err = tx.CopyFrom(ctx, pgx.Identifier{tmp}, append(cols, "weir_seq"), pgx.CopyFromRows(seq)); err == nil {
						_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (k, ts, service, n, v) SELECT DISTINCT ON (k) k, ts, service, n, v FROM %s ORDER BY k, weir_seq DESC
							ON CONFLICT (k) DO UPDATE SET ts = EXCLUDED.ts, service = EXCLUDED.service, n = EXCLUDED.n, v = EXCLUDED.v`, table, tmp))
					}
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				n += len(rows)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
		})
	}
}
