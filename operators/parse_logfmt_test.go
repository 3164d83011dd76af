package operators

import "testing"

func TestParseLogfmt(t *testing.T) {
	parseTestTable(t, `- parse: {format: logfmt}`, []parseTestCase{
		{name: "typed", line: `level=info msg="hello world" status=200 latency=1.5 ok=true neg=-3 exp=1e3`,
			want: []parseTestKV{{"level", "info"}, {"msg", "hello world"}, {"status", int64(200)}, {"latency", 1.5}, {"ok", true}, {"neg", int64(-3)}, {"exp", 1000.0}}},
		{name: "quoted with escapes", line: `msg="say \"hi\"\tnow \\ \u00e9" path="/a=b c"`,
			want: []parseTestKV{{"msg", "say \"hi\"\tnow \\ é"}, {"path", "/a=b c"}}},
		{name: "quoted number stays typed text", line: `n="42" s="x"`,
			want: []parseTestKV{{"n", int64(42)}, {"s", "x"}}},
		{name: "bare key and empty value", line: `debug level=warn empty= quoted=""`,
			want: []parseTestKV{{"debug", ""}, {"level", "warn"}, {"empty", ""}, {"quoted", ""}}},
		{name: "text that is not a JSON number", line: `zip=02134 plus=+1 dot=.5 nan=NaN big=99999999999999999999 ver=1.2.3 hex=0x1F`,
			want: []parseTestKV{{"zip", "02134"}, {"plus", "+1"}, {"dot", ".5"}, {"nan", "NaN"}, {"big", "99999999999999999999"}, {"ver", "1.2.3"}, {"hex", "0x1F"}}},
		{name: "booleans", line: `a=True b=FALSE c=yes d=t`,
			want: []parseTestKV{{"a", true}, {"b", false}, {"c", "yes"}, {"d", "t"}}},
		{name: "repeated key keeps first place, last value", line: `a=1 b=2 a=3`,
			want: []parseTestKV{{"a", int64(3)}, {"b", int64(2)}}},
		{name: "unicode", line: `name=Zoë city="São Paulo" 名前=太郎`,
			want: []parseTestKV{{"name", "Zoë"}, {"city", "São Paulo"}, {"名前", "太郎"}}},
		{name: "extra spaces and line break", line: "  a=1   b=x  \r\n",
			want: []parseTestKV{{"a", int64(1)}, {"b", "x"}}},

		{name: "unterminated quote", line: `level=info msg="unterminated`, wantErr: "parse: logfmt: unterminated quoted value at offset 28"},
		{name: "quote in value", line: `a=b"c`, wantErr: `parse: logfmt: unexpected '"' at offset 3`},
		{name: "equals in value", line: `path=/a=b`, wantErr: `parse: logfmt: unexpected '=' at offset 7`},
		{name: "no key", line: `=x`, wantErr: `parse: logfmt: unexpected '=' at offset 0`},
		{name: "bad escape", line: `a="\q"`, wantErr: `parse: logfmt: invalid quoted value at offset 6`},
		{name: "plain text", line: `GET /index.html`, wantErr: "parse: logfmt: no key=value pair in line"},
		{name: "two lines", line: "a=1\nb=2", wantErr: "parse: logfmt: line break at offset 3: want one record per line"},
		{name: "empty", line: "", wantErr: "parse: logfmt: empty line"},
	})
}

func TestParseLogfmtNoInference(t *testing.T) {
	parseTestTable(t, `- parse: {format: logfmt, infer_types: false}`, []parseTestCase{
		{name: "strings", line: `status=200 ok=true latency=1.5`,
			want: []parseTestKV{{"status", "200"}, {"ok", "true"}, {"latency", "1.5"}}},
	})
}

func TestParseLogfmtTypes(t *testing.T) {
	parseTestTable(t, `- parse: {format: logfmt, types: {ts: time, code: string, n: int, f: float, b: bool, day: "time:2006-01-02"}}`, []parseTestCase{
		{name: "converted", line: `ts=2026-11-24T22:33:58.5+01:00 code=007 n=12 f=3 b=1 day=2026-11-24 other=5`,
			want: []parseTestKV{
				{"ts", parseTestTime("2026-11-24T22:33:58.5+01:00")}, {"code", "007"}, {"n", int64(12)}, {"f", 3.0},
				{"b", true}, {"day", parseTestTime("2026-11-24T00:00:00Z")}, {"other", int64(5)},
			}},
		{name: "explicit string is not inferred first", line: `code=1.50`, want: []parseTestKV{{"code", "1.50"}}},
		{name: "bad int", line: `n=1.5`, wantErr: `parse: types: field "n": "1.5" is not a valid int`},
		{name: "bad bool", line: `b=maybe`, wantErr: `parse: types: field "b": "maybe" is not a valid bool`},
		{name: "bad layout", line: `day=24/11/2026`, wantErr: `parse: types: field "day": "24/11/2026" is not a valid time:2006-01-02`},
	})
}
