package operators

import "testing"

func TestParseRegex(t *testing.T) {
	op := `- parse: {format: regex, pattern: '^(?P<ip>\S+) (?P<level>[A-Z]+)(?: code=(?P<code>\d+))? (\w+): (?P<msg>.*)$'}`
	parseTestTable(t, op, []parseTestCase{
		{name: "all groups", line: `10.0.0.1 ERROR code=500 disk: full at 99.5%`,
			want: []parseTestKV{{"ip", "10.0.0.1"}, {"level", "ERROR"}, {"code", int64(500)}, {"msg", "full at 99.5%"}}},
		{name: "optional group absent is nil", line: `::1 WARN net: slow`,
			want: []parseTestKV{{"ip", "::1"}, {"level", "WARN"}, {"code", nil}, {"msg", "slow"}}},
		{name: "inferred values", line: "1.5 TRUE x: 42\n",
			want: []parseTestKV{{"ip", 1.5}, {"level", true}, {"code", nil}, {"msg", int64(42)}}},
		{name: "no match", line: `not a log line`, wantErr: "parse: regex: line does not match pattern"},
		{name: "empty", line: ``, wantErr: "parse: regex: line does not match pattern"},
	})
}

func TestParseRegexUnanchored(t *testing.T) {
	parseTestTable(t, `- parse: {format: regex, pattern: 'user=(?P<user>\w+)', infer_types: false}`, []parseTestCase{
		{name: "first match anywhere", line: `login ok user=bob user=eve`, want: []parseTestKV{{"user", "bob"}}},
		{name: "no inference", line: `user=123`, want: []parseTestKV{{"user", "123"}}},
	})
}
