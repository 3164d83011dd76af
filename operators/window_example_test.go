package operators

import (
	"context"
	"fmt"

	"github.com/weirhq/weir/pipeline"
)

// A tumbling one-minute window counting errors per service, fed four log
// lines; the last moves the watermark past the first window's end. The
// quantile is a DDSketch estimate, within 1% of the exact 12 and 40.
func ExampleWindowConfig() {
	cfg, err := testRegistry().Load("p.yaml", []byte(`
pipelines:
  - name: errors
    sources: [{wtest: {}}]
    operators:
      - window:
          tumbling: 1m
          event_time: ts
          watermark: 5s
          group_by: [service]
          aggregate:
            n: count()
            errors: 'sum(status >= 500 ? 1 : 0)'
            p50: quantile(latency_ms, 0.5)
    sinks: [{wtest: {}}]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	op, _ := cfg.Pipelines[0].Operators[0].Config.(pipeline.OperatorConfig).NewOperator(pipeline.Build{Component: "errors/operators[0]/window"})
	b := &pipeline.Batch{}
	for _, line := range []string{
		`{"ts":"2026-01-01T00:00:01Z","service":"api","status":200,"latency_ms":12}`,
		`{"ts":"2026-01-01T00:00:30Z","service":"api","status":503,"latency_ms":250}`,
		`{"ts":"2026-01-01T00:00:59Z","service":"db","status":500,"latency_ms":40}`,
		`{"ts":"2026-01-01T00:01:06Z","service":"api","status":200,"latency_ms":9}`,
	} {
		r := &pipeline.Record{Value: []byte(line)}
		_ = r.SetFields().ParseJSONObject(r.Value)
		b.Records = append(b.Records, r)
	}
	_ = op.Process(context.Background(), b)
	for _, r := range b.Records {
		fmt.Println(string(r.AppendJSON(nil)))
	}
	// Output:
	// {"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:01:00.000Z","service":"api","n":2,"errors":1,"p50":12.001040013389426,"firing":"on_time"}
	// {"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:01:00.000Z","service":"db","n":1,"errors":1,"p50":40.18177887755029,"firing":"on_time"}
}
