package operators

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// lookupBenchBatches makes batches of 1024 parsed records whose host field
// cycles over hosts keys (every 16th one missing from the table).
func lookupBenchBatches(b *testing.B, hosts int) [][]string {
	var lines []string
	for i := range 1024 {
		lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:00Z","host":"host-%d","level":"info","msg":"request served","status":200}`, i%hosts))
	}
	return [][]string{lines}
}

func benchLookup(b *testing.B, op pipeline.Operator, lines []string) {
	recs := jsonBatch(b, lines...).Records
	batch := &pipeline.Batch{}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for range b.N {
		b.StopTimer()
		batch.Records = batch.Records[:0]
		for _, r := range recs {
			// A fresh field set per pass, as records arrive parsed.
			fs := r.SetFields()
			_ = fs.ParseJSONObject(r.Value)
			batch.Records = append(batch.Records, r)
		}
		batch.Dead = batch.Dead[:0]
		b.StartTimer()
		if err := op.Process(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkLookupFile: the operator alone against a 10,000-row CSV table,
// two fields set per record.
func BenchmarkLookupFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "hosts.csv")
	var s strings.Builder
	s.WriteString("host,rack,dc\n")
	for i := range 10_000 {
		if i%16 != 15 {
			fmt.Fprintf(&s, "host-%d,r%d,dc-%d\n", i, i%40, i%3)
		}
	}
	writeFile(b, path, s.String())
	op := lookupOp(b, `{table: {file: {path: `+path+`, key: host}}, key: host, fields: {rack: rack, dc: dc}}`)
	benchLookup(b, op, lookupBenchBatches(b, 10_000)[0])
}

// BenchmarkLookupRedis: hashes in the shared Redis, HMGET pipelined per
// batch; cache off, so every batch is a round trip of 1024 keys.
func BenchmarkLookupRedis(b *testing.B) {
	url := testservices.Redis(b)
	p := testservices.Name("weirbench") + ":"
	c := redisTestClient(b, url, p)
	for i := range 1024 {
		redisDo(b, c, "HSET", fmt.Sprintf("%shost-%d", p, i), "rack", fmt.Sprintf("r%d", i%40), "dc", fmt.Sprintf("dc-%d", i%3))
	}
	for _, cache := range []string{"0", "100000"} {
		b.Run("max_entries="+cache, func(b *testing.B) {
			op := lookupOp(b, `{table: {redis: {url: "`+url+`", key: "`+p+`", cache: {max_entries: `+cache+`}}}, key: host, fields: {rack: rack, dc: dc}}`)
			benchLookup(b, op, lookupBenchBatches(b, 1024)[0])
		})
	}
}
