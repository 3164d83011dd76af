package operators_test

import (
	"context"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
)

// A parse operator configured as in pipelines.yaml: a combined access log
// line becomes typed fields, and a line that is not one goes to the
// dead-letter output with reason "parse".
func ExampleParseConfig() {
	cfg := operators.NewParseConfig()
	if err := yaml.Unmarshal([]byte(`{format: combined, types: {bytes: float}}`), cfg); err != nil {
		fmt.Println(err)
		return
	}
	op, err := cfg.NewOperator(pipeline.Build{Component: "web/operators[0]/parse"})
	if err != nil {
		fmt.Println(err)
		return
	}
	b := &pipeline.Batch{Records: []*pipeline.Record{
		{Value: []byte(`203.0.113.7 - alice [24/Nov/2026:22:33:58 +0100] "GET /cart HTTP/1.1" 502 173 "-" "curl/8.5"`)},
		{Value: []byte(`GET /cart 502`)},
	}}
	if err := op.Process(context.Background(), b); err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range b.Records {
		fmt.Println(string(r.AppendJSON(nil)))
		fmt.Printf("status is %T, bytes %T, time %T\n", r.Get("status"), r.Get("bytes"), r.Get("time"))
	}
	for _, d := range b.Dead {
		fmt.Printf("dead letter (%s): %s\n", d.Reason, d.Error)
	}
	// Output:
	// {"remote_addr":"203.0.113.7","ident":null,"user":"alice","time":"2026-11-24T21:33:58.000Z","method":"GET","path":"/cart","protocol":"HTTP/1.1","status":502,"bytes":173,"referer":null,"user_agent":"curl/8.5"}
	// status is int64, bytes float64, time time.Time
	// dead letter (parse): parse: combined: missing time at offset 13
}
