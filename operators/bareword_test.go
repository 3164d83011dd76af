package operators

import (
	"strings"
	"testing"
)

// loadWarnings loads a pipeline of the given operators (YAML list items,
// each starting "      - ") and returns its warnings.
func loadWarnings(t *testing.T, ops string) []string {
	t.Helper()
	cfg, err := testRegistry().Load("p.yaml", []byte(pipelineYAML(ops)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range cfg.Warnings {
		out = append(out, w.Error())
	}
	return out
}

// A bare word where text was likely meant (level == error, env: prod) is
// warned about at validate, with its position and the quoted fix, unless
// an operator before it is known to produce that field.
func TestBareWordsWarn(t *testing.T) {
	cases := []struct {
		name, ops string
		want      []string // substrings, one per warning
	}{
		{"filter compares with a bare word", "      - filter: level == error\n",
			[]string{`p.yaml:5:26: pipeline "p": operators[0]/filter: the bare word error reads the field "error", and no operator before it is known to produce that field. A bare word is always a field, never text: for the text, write filter: 'level == "error"'; for the field, $["error"] says so`}},
		{"map value is a bare word", "      - map: {env: prod, copy: '$[\"src\"]', ok: '\"prod\"'}\n",
			[]string{`p.yaml:5:20: pipeline "p": operators[0]/map: the bare word prod reads the field "prod", and no operator before it is known to produce that field. A bare word is always a field, never text: for the text, write env: '"prod"'`}},
		{"in list", "      - filter: 'level in [warn, \"error\"]'\n", []string{`p.yaml:5:28: pipeline "p": operators[0]/filter: the bare word warn reads the field "warn", and no operator before it is known to produce that field. A bare word is always a field, never text: for the text, write filter: 'level in ["warn", "error"]'`}},
		{"a parsed field is no trap", "      - parse: {format: regex, pattern: '(?P<level>\\w+) (?P<error>\\w+)'}\n      - filter: level == error\n      - map: {x: level}\n", nil},
		{"the parser does not produce it", "      - parse: {format: csv, columns: [level, msg]}\n      - filter: level == error\n",
			[]string{`p.yaml:6:26: pipeline "p": operators[1]/filter: the bare word error reads the field "error", and records here have no such field (they have level, msg)`}},
		{"a map before sets it", "      - map: {prod: '\"p\"'}\n      - map: {env: prod}\n", nil},
		{"the explicit form is silent", "      - filter: 'level == $[\"error\"] || a == $.b'\n", nil},
		{"comparison with text is silent", "      - filter: 'level == \"error\" && status != 200'\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := loadWarnings(t, c.ops)
			if len(got) != len(c.want) {
				t.Fatalf("warnings:\n%s\nwant %d", strings.Join(got, "\n"), len(c.want))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d:\n%s\nwant it to contain\n%s", i, got[i], w)
				}
			}
		})
	}
}
