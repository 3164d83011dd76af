package operators

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// parseFuzz feeds each input twice, in one batch, through the operator.
// Whatever the input: no panic; both records end up either in Records or
// in Dead (the count is kept); the two copies get the same outcome (state
// kept between lines, such as the reused CSV reader, does not leak); dead
// letters have reason "parse" and a "parse: " error; parsed values are of
// the documented field types. It returns the outcome for extra checks.
func parseFuzz(t *testing.T, o pipeline.Operator, line string) (parsed *pipeline.Record, dead *pipeline.DeadLetter) {
	t.Helper()
	recs := []*pipeline.Record{parseTestRecord(line), parseTestRecord(line)}
	b := &pipeline.Batch{Records: append([]*pipeline.Record(nil), recs...)}
	if err := o.Process(context.Background(), b); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if n := len(b.Records) + len(b.Dead); n != 2 {
		t.Fatalf("%d records + %d dead letters from 2 records", len(b.Records), len(b.Dead))
	}
	switch {
	case len(b.Dead) == 2:
		for _, d := range b.Dead {
			if d.Reason != "parse" || !strings.HasPrefix(d.Error, "parse: ") {
				t.Fatalf("dead letter reason %q, error %q", d.Reason, d.Error)
			}
		}
		if b.Dead[0].Error != b.Dead[1].Error {
			t.Fatalf("same line, different errors: %q and %q", b.Dead[0].Error, b.Dead[1].Error)
		}
		return nil, &b.Dead[0]
	case len(b.Records) == 2:
		a, c := parseTestFields(b.Records[0]), parseTestFields(b.Records[1])
		if parseTestFormat(a) != parseTestFormat(c) {
			t.Fatalf("same line, different fields:\n%s\n%s", parseTestFormat(a), parseTestFormat(c))
		}
		for _, f := range a {
			parseTestValidTypes(t, f.val)
		}
		return b.Records[0], nil
	}
	t.Fatalf("same line, different outcomes: %d parsed, %d dead", len(b.Records), len(b.Dead))
	return nil, nil
}

func parseFuzzSeeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
}

// FuzzParseJSON also checks the JSON path against encoding/json: a line is
// parsed exactly when it is one valid JSON object.
func FuzzParseJSON(f *testing.F) {
	parseFuzzSeeds(f, `{"a":1,"b":"x\ny","c":[1,{"d":null}],"e":true}`, `{"a":1,}`, `[1]`, `{"a":"\ud83d\ude00"}`,
		`{"a":01}`, `{} x`, " {}\n", `{"a":-}`, `{"a\"b":1}`, `{"a":"\x"}`, "{\"a\":\"\xff\"}", `{"a":1e}`, `{"a":[1 2]}`)
	o := parseTestOp(f, `- parse: {format: json}`)
	f.Fuzz(func(t *testing.T, line string) {
		r, _ := parseFuzz(t, o, line)
		valid := json.Valid([]byte(line)) && bytes.HasPrefix(bytes.TrimLeft([]byte(line), " \t\r\n"), []byte("{"))
		if valid != (r != nil) {
			t.Fatalf("%q: parsed %v, but encoding/json says valid object %v", line, r != nil, valid)
		}
	})
}

func FuzzParseLogfmt(f *testing.F) {
	parseFuzzSeeds(f, `level=info msg="hello world" n=1 f=1.5 ok=true`, `a="\u00e9\"" b= c`, `a=b"c`, `=`, `a="`, "a=1\nb=2", "")
	o := parseTestOp(f, `- parse: {format: logfmt}`)
	f.Fuzz(func(t *testing.T, line string) { parseFuzz(t, o, line) })
}

func FuzzParseRegex(f *testing.F) {
	parseFuzzSeeds(f, `10.0.0.1 ERROR code=500 disk: full`, `::1 WARN net: slow`, "x", "")
	o := parseTestOp(f, `- parse: {format: regex, pattern: '^(?P<ip>\S+) (?P<level>[A-Z]+)(?: code=(?P<code>\d+))? (\w+): (?P<msg>.*)$'}`)
	f.Fuzz(func(t *testing.T, line string) { parseFuzz(t, o, line) })
}

func FuzzParseCSV(f *testing.F) {
	parseFuzzSeeds(f, `a,b,c`, `"a,b","c""d",e`, "a,\"b\nc\",d", `a,b"c,d`, `a,"b`, "a,b,c\nd,e,f", "\r\n", "")
	o := parseTestOp(f, `- parse: {format: csv, columns: [x, y, z]}`)
	f.Fuzz(func(t *testing.T, line string) { parseFuzz(t, o, line) })
}

func FuzzParseSyslog(f *testing.F) {
	parseFuzzSeeds(f,
		`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event`,
		`<34>Oct 11 22:14:15 mymachine su: 'su root' failed`, `Nov 24 22:33:58 myhost sshd[4321]: Accepted`,
		`<13>Feb 29 00:00:00 h a: leap`, `<0>1 - - - - - -`, `<13>2025-01-02T03:04:05Z host app: x`, `<999>`, "")
	o := parseTestOp(f, `- parse: {format: syslog}`)
	f.Fuzz(func(t *testing.T, line string) { parseFuzz(t, o, line) })
}

func FuzzParseCombined(f *testing.F) {
	parseFuzzSeeds(f,
		`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
		`h - - [01/Jan/2026:00:00:00 +0000] "\"" 400 - "-" "a\\"`, `h - - [x] "" 1 1 "" ""`, "")
	combined := parseTestOp(f, `- parse: {format: combined}`)
	common := parseTestOp(f, `- parse: {format: common}`)
	f.Fuzz(func(t *testing.T, line string) {
		parseFuzz(t, combined, line)
		parseFuzz(t, common, line)
	})
}
