package operators

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weirhq/weir/pipeline"
)

// Log records enriched from a CSV table of hosts; a host the table does
// not know goes to the dead-letter output.
func ExampleLookupConfig() {
	dir, _ := os.MkdirTemp("", "lookup-example")
	defer os.RemoveAll(dir)
	hosts := filepath.Join(dir, "hosts.csv")
	_ = os.WriteFile(hosts, []byte("host,rack,datacenter\nweb-1,r12,eu-west-1\ndb-1,r40,eu-west-2\n"), 0o644)
	cfg, err := testRegistry().Load("p.yaml", []byte(`
pipelines:
  - name: enrich
    sources: [{wtest: {}}]
    operators:
      - lookup:
          table:
            file: { path: `+hosts+`, key: host }
          key: host
          fields: { rack: rack, dc: datacenter }
          on_miss: dead_letter
    sinks: [{wtest: {}}]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	op, err := cfg.Pipelines[0].Operators[0].Config.(pipeline.OperatorConfig).NewOperator(pipeline.Build{Component: "enrich/operators[0]/lookup"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer op.(interface{ Close(context.Context) error }).Close(context.Background())
	b := &pipeline.Batch{}
	for _, line := range []string{
		`{"host":"web-1","msg":"upstream timeout"}`,
		`{"host":"cache-9","msg":"evicted"}`,
		`{"host":"db-1","msg":"slow query"}`,
	} {
		r := &pipeline.Record{Value: []byte(line)}
		_ = r.SetFields().ParseJSONObject(r.Value)
		b.Records = append(b.Records, r)
	}
	_ = op.Process(context.Background(), b)
	for _, r := range b.Records {
		fmt.Println(string(r.AppendJSON(nil)))
	}
	for _, d := range b.Dead {
		fmt.Println("dead:", d.Reason, d.Error)
	}
	// Output:
	// {"host":"web-1","msg":"upstream timeout","rack":"r12","dc":"eu-west-1"}
	// {"host":"db-1","msg":"slow query","rack":"r40","dc":"eu-west-2"}
	// dead: lookup_miss lookup: no row for key "cache-9"
}
