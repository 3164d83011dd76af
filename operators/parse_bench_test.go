package operators

import (
	"context"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// BenchmarkParse measures each format on a typical line of about 150
// bytes. One op is one record (records go through in batches of 1024, as
// sources send them), so ns/op and allocs/op are per record; records/s is
// the throughput on one goroutine.
func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name, op, line string
	}{
		{"json", `- parse: {format: json}`,
			`{"ts":"2026-11-24T22:33:58.123Z","level":"error","service":"checkout","msg":"payment declined","status":502,"latency_ms":123.4,"user":{"id":42}}`},
		{"json_field", `- parse: {format: json, field: message}`,
			`{"ts":"2026-11-24T22:33:58.123Z","level":"error","service":"checkout","msg":"payment declined","status":502,"latency_ms":123.4,"user":{"id":42}}`},
		{"logfmt", `- parse: {format: logfmt}`,
			`ts=2026-11-24T22:33:58.123Z level=error service=checkout msg="payment declined for order 1234" status=502 latency_ms=123.4 user=42`},
		{"logfmt_no_infer", `- parse: {format: logfmt, infer_types: false}`,
			`ts=2026-11-24T22:33:58.123Z level=error service=checkout msg="payment declined for order 1234" status=502 latency_ms=123.4 user=42`},
		{"regex", `- parse: {format: regex, pattern: '^(?P<ts>\S+) (?P<level>[A-Z]+) \[(?P<service>[^\]]+)\] (?P<msg>.*) status=(?P<status>\d+) latency_ms=(?P<latency_ms>[\d.]+)$'}`,
			`2026-11-24T22:33:58.123Z ERROR [checkout] payment declined for order 1234 by the card issuer bank status=502 latency_ms=123.4`},
		{"csv", `- parse: {format: csv, columns: [ts, level, service, msg, status, latency_ms, user]}`,
			`2026-11-24T22:33:58.123Z,error,checkout,"payment declined, card issuer refused order 1234 for user",502,123.4,42`},
		{"syslog", `- parse: {format: syslog}`,
			`<165>1 2026-11-24T22:33:58.123Z web-1.example.com checkout 4242 PAY [meta@32473 order="1234" status="502"] payment declined`},
		{"syslog_3164", `- parse: {format: syslog}`,
			`<13>Nov 24 22:33:58 web-1.example.com checkout[4242]: payment declined for order 1234 by the card issuer, status 502 after 123 ms`},
		{"combined", `- parse: {format: combined}`,
			`203.0.113.7 - - [24/Nov/2026:22:33:58 +0000] "GET /api/v1/orders/1234 HTTP/1.1" 502 173 "https://shop.example.com/" "Mozilla/5.0 (X11)"`},
		{"common", `- parse: {format: common}`,
			`203.0.113.7 - alice [24/Nov/2026:22:33:58 +0000] "GET /api/v1/orders/1234?expand=items&fields=all&page=2 HTTP/1.1" 502 173`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := parseTestOp(b, bc.op)
			const batch = 1024
			recs := pipeline.NewRecords(batch)
			for _, r := range recs {
				r.Value = []byte(bc.line)
				r.Time = parseTestNow
			}
			bt := &pipeline.Batch{Records: make([]*pipeline.Record, 0, batch)}
			ctx := context.Background()
			run := func(n int) {
				if bc.name == "json_field" {
					b.StopTimer()
					for _, r := range recs[:n] {
						r.SetFields().Set("message", string(r.Value))
					}
					b.StartTimer()
				}
				bt.Records = append(bt.Records[:0], recs[:n]...)
				bt.Dead = bt.Dead[:0]
				if err := o.Process(ctx, bt); err != nil {
					b.Fatal(err)
				}
				if len(bt.Records) != n {
					b.Fatalf("%d of %d records parsed; first error: %s", len(bt.Records), n, bt.Dead[0].Error)
				}
			}
			run(batch) // warm up: the records' field slices reach their size
			b.SetBytes(int64(len(bc.line)))
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), parseBenchCPU()
			for done := 0; done < b.N; done += batch {
				run(min(batch, b.N-done))
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			// CPU time per record (the process's, GC included) holds steadier
			// than ns/op when other work shares the machine.
			if cpu0 >= 0 {
				b.ReportMetric(float64(parseBenchCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}
