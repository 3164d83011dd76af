package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// TestConfigErrorPositions: the components that decode their own YAML
// (parse, window, dedupe, parquet, arrow) report an unknown key and a
// value of the wrong type at the same place as a component decoded from
// its struct (the file source and sink, the kafka source): an unknown key
// at the key, a wrong value at the value. And for all of them a null
// option is its default: the configuration loads, or is refused, exactly
// as if the option were left out.
func TestConfigErrorPositions(t *testing.T) {
	// Each component is written on line 4 as `      - <kind>: {<opts>}`,
	// and <bad> is the option at fault; the error must point into it.
	type comp struct {
		kind, section, opts string
	}
	comps := []comp{
		{"file", "sources", "paths: [in.log]"},
		{"kafka", "sources", "brokers: ['127.0.0.1:9092'], topics: [t], group: g"},
		{"file", "sinks", "path: out.jsonl"},
		{"parse", "operators", "format: json"},
		{"dedupe", "operators", "key: id, horizon: 1m"},
		{"window", "operators", "tumbling: 1m, event_time: ts, aggregate: {n: count()}"},
		{"parquet", "sinks", "path: out/lake"},
		{"arrow", "sinks", "path: out/arrow"},
	}
	// What is wrong, and where the error must point: at the key, or at
	// the value.
	faults := []struct {
		name, bad string // bad's %s is scalarKey's option
		atValue   bool
	}{
		{name: "unknown key", bad: "nosuchkey: 1"},
		{name: "wrong type", bad: "%s: [1, 2]", atValue: true},
	}
	// An option of each component that takes a scalar.
	scalarKey := map[string]string{
		"sources/file": "poll_interval", "sources/kafka": "group", "sinks/file": "path",
		"operators/parse": "format", "operators/dedupe": "horizon", "operators/window": "watermark",
		"sinks/parquet": "path", "sinks/arrow": "path",
	}
	for _, c := range comps {
		for _, f := range faults {
			key := scalarKey[c.section+"/"+c.kind]
			bad := f.bad
			if strings.Contains(bad, "%s") {
				bad = fmt.Sprintf(bad, key)
			}
			opts := removeOption(c.opts, key)
			if opts != "" {
				opts += ", "
			}
			opts += bad
			t.Run(c.section+"/"+c.kind+"/"+f.name, func(t *testing.T) {
				line := "      - " + c.kind + ": {" + opts + "}"
				yaml := positionsConfig(c.section, line)
				_, err := pipeline.Default.Load("p.yaml", []byte(yaml))
				var ces pipeline.ConfigErrors
				var ce *pipeline.ConfigError
				var pos pipeline.Pos
				switch {
				case errors.As(err, &ces) && len(ces) > 0:
					pos = ces[0].Pos
				case errors.As(err, &ce):
					pos = ce.Pos
				default:
					t.Fatalf("want a positioned config error, got %v", err)
				}
				col := strings.Index(line, bad) + 1
				if f.atValue {
					col += strings.Index(bad, ": ") + 2
				}
				if pos.Line != 4 || pos.Column != col {
					t.Errorf("error at %d:%d, want 4:%d (%s)\n%s\nerr: %v", pos.Line, pos.Column, col, f.name, line, err)
				}
			})
		}
		// A null option is its default, as if it were left out.
		key := scalarKey[c.section+"/"+c.kind]
		t.Run(c.section+"/"+c.kind+"/null", func(t *testing.T) {
			without := removeOption(c.opts, key)
			withNull := without
			if withNull != "" {
				withNull += ", "
			}
			withNull += key + ": null"
			load := func(opts string) string {
				_, err := pipeline.Default.Load("p.yaml", []byte(positionsConfig(c.section, "      - "+c.kind+": {"+opts+"}")))
				if err == nil {
					return "ok"
				}
				return err.Error()
			}
			if a, b := load(withNull), load(without); a != b {
				t.Errorf("%s: null: %s\nleft out: %s", key, a, b)
			}
		})
	}
}

// removeOption drops key: ... from a flow mapping's options.
func removeOption(opts, key string) string {
	var keep []string
	for _, o := range splitFlow(opts) {
		if !strings.HasPrefix(strings.TrimSpace(o), key+":") {
			keep = append(keep, o)
		}
	}
	return strings.TrimPrefix(strings.Join(keep, ","), " ")
}

// splitFlow splits flow-mapping options at top-level commas.
func splitFlow(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '[', '{', '(':
			depth++
		case ']', '}', ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// positionsConfig is a pipeline whose line 5 is line, in section; the
// other sections hold components that are right.
func positionsConfig(section, line string) string {
	parts := map[string]string{
		"sources":   "      - file: {paths: [in.log]}",
		"operators": "      - parse: {format: json}",
		"sinks":     "      - file: {path: out.jsonl}",
	}
	parts[section] = line
	var b strings.Builder
	b.WriteString("pipelines:\n  - name: p\n")
	for _, s := range []string{section, "sources", "operators", "sinks"} {
		if strings.Contains(b.String(), "    "+s+":\n") {
			continue
		}
		b.WriteString("    " + s + ":\n" + parts[s] + "\n")
	}
	return b.String()
}
