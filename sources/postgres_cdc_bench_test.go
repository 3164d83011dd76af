package sources

import (
	"context"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// BenchmarkPostgresCDC reads a backlog of b.N inserted rows (5 columns:
// int, text, float8, timestamptz, boolean; transactions of 1000 rows) from
// the slot: the server's pgoutput decoding, the replication protocol, and
// the source's decoding into typed records. It reports changes/s.
//
//	go test -run '^$' -bench BenchmarkPostgresCDC -benchtime 200000x -count 5 ./sources/
func BenchmarkPostgresCDC(b *testing.B) {
	db := newCDCTestDB(b, "id bigint PRIMARY KEY, name text, score float8, at timestamptz, ok boolean")
	src, _ := newCDCTestSource(b, db.config(), pipeline.DefaultBatchSize, nil)
	for from := 0; from < b.N; from += 1000 {
		db.exec(b, "INSERT INTO "+db.table+" SELECT g, 'name-' || g, g * 0.5, now(), g % 2 = 0 FROM generate_series($1::bigint, $2::bigint) g",
			from+1, min(from+1000, b.N))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for n < b.N {
		batch := pipeline.Batch{}
		ack, err := src.Read(ctx, &batch)
		if err != nil {
			b.Fatal(err)
		}
		n += len(batch.Records)
		if ack != nil {
			ack(ctx)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "changes/s")
}
