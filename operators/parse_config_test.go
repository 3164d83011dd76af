package operators

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// TestParseConfigErrors: bad options are refused at load, at the position
// of the option at fault.
func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string // the operator item, on line 5 from column 7
		want string
	}{
		{"unknown format", `- parse: {format: xml}`,
			`p.yaml:5:25: parse: format: "xml" is not one of json, logfmt, regex, csv, syslog, combined, common`},
		{"missing format", `- parse: {field: msg}`,
			"p.yaml:5:16: parse: format: missing (want one of json, logfmt, regex, csv, syslog, combined, common)"},
		{"null config", `- parse:`,
			"p.yaml:5:9: parse: format: missing (want one of json, logfmt, regex, csv, syslog, combined, common)"},
		{"unknown option", `- parse: {format: json, fields: x}`,
			`p.yaml:5:31: parse: unknown option "fields" (want format, field, pattern, columns, header, delimiter, rfc, timezone, infer_types, types)`},
		{"bad regex", `- parse: {format: regex, pattern: '(?P<a>x'}`,
			"p.yaml:5:41: parse: pattern: missing closing ): `(?P<a>x`"},
		{"regex without named group", `- parse: {format: regex, pattern: '(\d+) (\w+)'}`,
			`p.yaml:5:41: parse: pattern: "(\\d+) (\\w+)" has no named group; name the parts to keep, as in (?P<name>...)`},
		{"regex without pattern", `- parse: {format: regex}`,
			`p.yaml:5:16: parse: pattern: format regex needs a pattern with named groups, such as '(?P<level>\w+): (?P<msg>.*)'`},
		{"pattern on json", `- parse: {format: json, pattern: 'x'}`,
			"p.yaml:5:31: parse: pattern: not an option of format json (it is for regex)"},
		{"infer_types on syslog", `- parse: {format: syslog, infer_types: false}`,
			"p.yaml:5:33: parse: infer_types: not an option of format syslog (it is for logfmt, csv, regex, combined, common)"},
		{"csv without columns", `- parse: {format: csv}`,
			"p.yaml:5:25: parse: format: csv needs `columns: [a, b, ...]` or `header: true`"},
		{"csv duplicate column", `- parse: {format: csv, columns: [a, b, a]}`,
			`p.yaml:5:39: parse: columns: column "a" appears twice`},
		{"csv bad delimiter", `- parse: {format: csv, columns: [a], delimiter: ";;"}`,
			`p.yaml:5:55: parse: delimiter: ";;": want a single character, such as ",", ";" or "\t"`},
		{"csv quote delimiter", `- parse: {format: csv, columns: [a], delimiter: '"'}`,
			`p.yaml:5:55: parse: delimiter: "\"" cannot be a delimiter`},
		{"csv columns not a list", `- parse: {format: csv, columns: {a: 1}}`,
			"p.yaml:5:39: columns: want a list, got a mapping"},
		{"bad rfc", `- parse: {format: syslog, rfc: 3339}`,
			`p.yaml:5:38: parse: rfc: "3339" is not one of 5424, 3164, auto`},
		{"bad timezone", `- parse: {format: syslog, timezone: Mars/Olympus}`,
			`p.yaml:5:43: parse: timezone: "Mars/Olympus" is not a known IANA time zone (such as UTC or Europe/Paris)`},
		{"bad type", `- parse: {format: logfmt, types: {a: int, b: integer}}`,
			`p.yaml:5:52: parse: types.b: "integer" is not one of int, float, bool, string, time, time:<layout>`},
		{"empty time layout", `- parse: {format: logfmt, types: {a: "time:"}}`,
			`p.yaml:5:44: parse: types.a: time: needs a Go layout after the colon, such as "time:2006-01-02 15:04:05"`},
		{"types not a mapping", `- parse: {format: logfmt, types: [a]}`,
			"p.yaml:5:40: parse: types: expected a mapping of field: type, such as {status: int}"},
		{"infer_types not a bool", `- parse: {format: logfmt, infer_types: maybe}`,
			"p.yaml:5:46:"},
		{"duplicate option", `- parse: {format: json, format: csv}`,
			`p.yaml:5:31: mapping key "format" already defined at [5:17]`},
		{"not a mapping", `- parse: json`,
			"p.yaml:5:16: parse: expected a mapping of options, such as {format: json}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pipeline.Default.Load("p.yaml", []byte(parseTestYAML(tc.op)))
			if err == nil {
				t.Fatalf("loaded %s", tc.op)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not contain\n  %s\ngot\n  %s", tc.want, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			}
		})
	}
}

// TestParseConfigBlockStyle: positions in block-style YAML.
func TestParseConfigBlockStyle(t *testing.T) {
	yaml := `pipelines:
  - name: t
    sources: [{parse_test_source: {}}]
    operators:
      - parse:
          format: regex
          pattern: '^(?P<level>\w+) (?P<msg>.*'
          types:
            level: string
            msg: text
    sinks: [{parse_test_sink: {}}]
`
	_, err := pipeline.Default.Load("p.yaml", []byte(yaml))
	if want := "p.yaml:7:20: parse: pattern: missing closing ): `^(?P<level>\\w+) (?P<msg>.*`"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %s", err, want)
	}
	yaml = strings.Replace(yaml, ".*'", ".*)'", 1)
	_, err = pipeline.Default.Load("p.yaml", []byte(yaml))
	if want := `p.yaml:10:18: parse: types.msg: "text" is not one of`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %s", err, want)
	}
}

// TestParseConfigValid loads every format with its options.
func TestParseConfigValid(t *testing.T) {
	for _, op := range []string{
		`- parse: {format: json}`,
		`- parse: {format: json, field: msg, types: {ts: time}}`,
		`- parse: {format: logfmt, infer_types: false}`,
		`- parse: {format: regex, pattern: '(?P<a>.)'}`,
		`- parse: {format: csv, columns: [a, b], delimiter: "\t"}`,
		`- parse: {format: csv, header: true, delimiter: "|"}`,
		`- parse: {format: syslog}`,
		`- parse: {format: syslog, rfc: 5424}`,
		`- parse: {format: syslog, rfc: "3164", timezone: America/New_York}`,
		`- parse: {format: combined, types: {bytes: float}}`,
		`- parse: {format: common}`,
	} {
		o := parseTestOp(t, op)
		if err := o.Process(context.Background(), &pipeline.Batch{}); err != nil {
			t.Errorf("%s: Process of an empty batch: %v", op, err)
		}
	}
}

// TestParseConfigGo: a ParseConfig built in Go is checked by Validate and
// NewOperator.
func TestParseConfigGo(t *testing.T) {
	c := NewParseConfig()
	if err := c.Validate(); err == nil || err.Error() != "parse: format: missing (want one of json, logfmt, regex, csv, syslog, combined, common)" {
		t.Errorf("Validate of an empty config: %v", err)
	}
	c.Format = FormatRegex
	c.Pattern = "(?P<x>"
	if _, err := c.NewOperator(pipeline.Build{}); err == nil || !strings.HasPrefix(err.Error(), "parse: pattern: missing closing )") {
		t.Errorf("NewOperator with a bad pattern: %v", err)
	}
	c.Pattern = `(?P<n>\d+)`
	o, err := c.NewOperator(pipeline.Build{Component: "t/operators[0]/parse"})
	if err != nil {
		t.Fatal(err)
	}
	r, d := parseTestRun(t, o, parseTestRecord("n=12"))
	if d != nil {
		t.Fatal(d.Error)
	}
	parseTestCheck(t, r, []parseTestKV{{"n", int64(12)}})
}

// TestParseBatch: a batch keeps its good records, in order, and every bad
// one becomes a dead letter, in order; nothing is lost or duplicated.
func TestParseBatch(t *testing.T) {
	o := parseTestOp(t, `- parse: {format: json}`)
	lines := []string{`{"i":0}`, `bad1`, `{"i":2}`, `{"i":3}`, `[4]`, `{"i":5}`, ``}
	recs := make([]*pipeline.Record, len(lines))
	for i, l := range lines {
		recs[i] = parseTestRecord(l)
	}
	b := parseTestBatch(t, o, recs...)
	var got []int64
	for _, r := range b.Records {
		got = append(got, r.Get("i").(int64))
	}
	if want := []int64{0, 2, 3, 5}; !parseTestEqualInts(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	var dead []string
	for _, d := range b.Dead {
		dead = append(dead, string(d.Record.Value))
	}
	if want := []string{"bad1", "[4]", ""}; strings.Join(dead, "|") != strings.Join(want, "|") {
		t.Errorf("dead %q, want %q", dead, want)
	}
	// The slots past the kept records are cleared, not left pointing at
	// records the batch no longer holds.
	full := b.Records[:cap(b.Records)]
	for i := len(b.Records); i < len(full); i++ {
		if full[i] != nil {
			t.Errorf("slot %d past the end still holds a record", i)
		}
	}
}

func parseTestEqualInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestParseInstances: NewOperator may be called more than once, for
// parallel instances; they share nothing mutable (run with -race).
func TestParseInstances(t *testing.T) {
	c := NewParseConfig()
	c.Format = FormatCSV
	c.Header = true
	c.Types = []ParseType{{Field: "n", Type: "float"}}
	ops := make([]pipeline.Operator, 2)
	for i := range ops {
		o, err := c.NewOperator(pipeline.Build{Component: "t/operators[0]/parse"})
		if err != nil {
			t.Fatal(err)
		}
		ops[i] = o
	}
	done := make(chan *pipeline.Batch)
	for i, o := range ops {
		go func() {
			b := &pipeline.Batch{Records: []*pipeline.Record{parseTestRecord("k,n"), parseTestRecord(fmt.Sprintf("x,%d", i))}}
			if err := o.Process(context.Background(), b); err != nil {
				t.Error(err)
			}
			done <- b
		}()
	}
	for range ops {
		b := <-done
		if len(b.Records) != 1 || len(b.Dead) != 0 {
			t.Fatalf("%d records, %d dead letters, want 1 and 0", len(b.Records), len(b.Dead))
		}
		if _, ok := b.Records[0].Get("n").(float64); !ok {
			t.Errorf("n = %#v, want a float64", b.Records[0].Get("n"))
		}
	}
}
