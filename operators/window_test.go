package operators

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// TestWindowSemantics runs small streams with explicit event times through
// one window configuration each and checks every output record and dead
// letter, in order, with batches of 1 and of everything at once.
func TestWindowSemantics(t *testing.T) {
	keyed := func(lines ...string) string {
		return windowYAML(append(lines, "event_time: ts", "group_by: [k]", "aggregate: {n: count(), s: sum(v)}")...)
	}
	tests := []struct {
		name   string
		yaml   string
		events []ev
		out    []string
		dead   []string
		late   int64
	}{
		{
			name: "in order",
			yaml: keyed("tumbling: 1m"),
			events: []ev{
				{d: sec(10), fields: `"k":"a","v":1`},
				{d: sec(20), fields: `"k":"b","v":2`},
				{d: sec(50), fields: `"k":"a","v":3`},
				{d: sec(61), fields: `"k":"a","v":4`},  // watermark 61s: [0,60) fires
				{d: sec(130), fields: `"k":"b","v":5`}, // [60,120) fires
			},
			out: []string{
				row(0, 60, `"k":"a","n":2,"s":4`, "on_time"),
				row(0, 60, `"k":"b","n":1,"s":2`, "on_time"),
				row(60, 120, `"k":"a","n":1,"s":4`, "on_time"),
				row(120, 180, `"k":"b","n":1,"s":5`, "on_time"), // end of input
			},
		},
		{
			name: "out of order within the watermark",
			yaml: keyed("tumbling: 1m", "watermark: 10s"),
			events: []ev{
				{d: sec(10), fields: `"k":"a","v":1`},
				{d: sec(65), fields: `"k":"a","v":2`}, // watermark 55s
				{d: sec(55), fields: `"k":"a","v":3`}, // behind the newest, ahead of the watermark
				{d: sec(69), fields: `"k":"a","v":4`}, // watermark 59s: nothing fires
				{d: sec(71), fields: `"k":"a","v":5`}, // watermark 61s: [0,60) fires
			},
			out: []string{
				row(0, 60, `"k":"a","n":2,"s":4`, "on_time"),
				row(60, 120, `"k":"a","n":3,"s":11`, "on_time"),
			},
		},
		{
			name: "late within allowed lateness, then too late",
			yaml: keyed("tumbling: 1m", "allowed_lateness: 30s"),
			events: []ev{
				{d: sec(10), fields: `"k":"a","v":1`},
				{d: sec(61), fields: `"k":"a","v":2`}, // [0,60) fires
				{d: sec(50), fields: `"k":"a","v":3`}, // late: re-fires with the new value
				{d: sec(55), fields: `"k":"b","v":4`}, // late, first record of its group
				{d: sec(95), fields: `"k":"a","v":5`}, // watermark 95s >= 60s+30s: [0,60) dropped
				{d: sec(40), fields: `"k":"a","v":6`}, // too late
			},
			out: []string{
				row(0, 60, `"k":"a","n":1,"s":1`, "on_time"),
				row(0, 60, `"k":"a","n":2,"s":4`, "late"),
				row(0, 60, `"k":"b","n":1,"s":4`, "late"),
				row(60, 120, `"k":"a","n":2,"s":7`, "on_time"),
			},
			dead: []string{`late: {"ts":"2026-01-01T00:00:40.000Z","k":"a","v":6}`},
			late: 1,
		},
		{
			name: "too late without allowed lateness",
			yaml: keyed("tumbling: 1m", "watermark: 5s"),
			events: []ev{
				{d: sec(30), fields: `"k":"a","v":1`},
				{d: sec(66), fields: `"k":"a","v":2`}, // watermark 61s: [0,60) fires and is dropped
				{d: sec(59), fields: `"k":"a","v":3`}, // too late
				{d: sec(62), fields: `"k":"a","v":4`}, // behind the newest but on time
			},
			out: []string{
				row(0, 60, `"k":"a","n":1,"s":1`, "on_time"),
				row(60, 120, `"k":"a","n":2,"s":6`, "on_time"),
			},
			dead: []string{`late: {"ts":"2026-01-01T00:00:59.000Z","k":"a","v":3}`},
			late: 1,
		},
		{
			name: "overlapping hopping windows",
			yaml: keyed("hopping: {size: 10s, slide: 5s}"),
			events: []ev{
				{d: sec(7), fields: `"k":"a","v":1`},  // [0,10) [5,15)
				{d: sec(12), fields: `"k":"a","v":2`}, // [5,15) [10,20); watermark 12s: [0,10) fires
				{d: sec(21), fields: `"k":"a","v":4`}, // [15,25) [20,30); [5,15) and [10,20) fire
			},
			out: []string{
				row(0, 10, `"k":"a","n":1,"s":1`, "on_time"),
				row(5, 15, `"k":"a","n":2,"s":3`, "on_time"),
				row(10, 20, `"k":"a","n":1,"s":2`, "on_time"),
				row(15, 25, `"k":"a","n":1,"s":4`, "on_time"),
				row(20, 30, `"k":"a","n":1,"s":4`, "on_time"),
			},
		},
		{
			name: "late record in overlapping windows re-fires each",
			yaml: keyed("hopping: {size: 10s, slide: 5s}", "allowed_lateness: 4s"),
			events: []ev{
				{d: sec(7), fields: `"k":"a","v":1`},
				{d: sec(16), fields: `"k":"a","v":2`}, // [0,10) fires; [5,15) fires
				{d: sec(8), fields: `"k":"a","v":3`},  // [0,10) dropped at 14s; [5,15) re-fires
			},
			out: []string{
				row(0, 10, `"k":"a","n":1,"s":1`, "on_time"),
				row(5, 15, `"k":"a","n":1,"s":1`, "on_time"),
				row(5, 15, `"k":"a","n":2,"s":4`, "late"),
				row(10, 20, `"k":"a","n":1,"s":2`, "on_time"),
				row(15, 25, `"k":"a","n":1,"s":2`, "on_time"),
			},
		},
		{
			name: "sessions extend and merge",
			yaml: windowYAML("session: {gap: 10s}", "watermark: 30s", "event_time: ts", "group_by: [k]",
				"aggregate: {n: count(), first: first(v), last: last(v), all: 'collect(v, 10)'}"),
			events: []ev{
				{d: sec(0), fields: `"k":"a","v":1`},  // a: [0,10)
				{d: sec(16), fields: `"k":"a","v":2`}, // a: [0,10) [16,26)
				{d: sec(3), fields: `"k":"b","v":9`},  // b: [3,13)
				{d: sec(8), fields: `"k":"a","v":3`},  // [8,18) bridges: a: [0,26)
				{d: sec(12), fields: `"k":"b","v":8`}, // b: [3,22)
				{d: sec(60), fields: `"k":"c","v":7`}, // watermark 30s: b, then a fire (by end)
			},
			out: []string{
				row(3, 22, `"k":"b","n":2,"first":9,"last":8,"all":[9,8]`, "on_time"),
				row(0, 26, `"k":"a","n":3,"first":1,"last":2,"all":[1,2,3]`, "on_time"),
				row(60, 70, `"k":"c","n":1,"first":7,"last":7,"all":[7]`, "on_time"),
			},
		},
		{
			name: "late record reopens a fired session",
			yaml: windowYAML("session: {gap: 10s}", "allowed_lateness: 1m", "event_time: ts", "group_by: [k]", "aggregate: {n: count()}"),
			events: []ev{
				{d: sec(0), fields: `"k":"a"`},
				{d: sec(30), fields: `"k":"b"`}, // a [0,10) fires
				{d: sec(5), fields: `"k":"a"`},  // late: a [0,15) re-fires
				{d: sec(23), fields: `"k":"a"`}, // a [23,33), open
				{d: sec(14), fields: `"k":"a"`}, // bridges [0,15) and [23,33): [0,33) is open again
				{d: sec(36), fields: `"k":"b"`}, // watermark 36s: a [0,33) fires on time
			},
			out: []string{
				row(0, 10, `"k":"a","n":1`, "on_time"),
				row(0, 15, `"k":"a","n":2`, "late"),
				row(0, 33, `"k":"a","n":4`, "on_time"),
				row(30, 46, `"k":"b","n":2`, "on_time"),
			},
		},
		{
			name: "early firings",
			yaml: keyed("tumbling: 1m", "early_every: 10s"),
			events: []ev{
				{d: sec(1), fields: `"k":"a","v":1`},
				{d: sec(2), fields: `"k":"b","v":1`},
				{d: sec(12), fields: `"k":"a","v":1`}, // passes 10s: both groups changed
				{d: sec(25), fields: `"k":"a","v":1`}, // passes 20s: only a changed
				{d: sec(29), fields: `"k":"a","v":1`},
				{d: sec(61), fields: `"k":"a","v":1`}, // on time; [60,120) began at 60s: no early firing
			},
			out: []string{
				row(0, 60, `"k":"a","n":2,"s":2`, "early"),
				row(0, 60, `"k":"b","n":1,"s":1`, "early"),
				row(0, 60, `"k":"a","n":3,"s":3`, "early"),
				row(0, 60, `"k":"a","n":4,"s":4`, "on_time"),
				row(0, 60, `"k":"b","n":1,"s":1`, "on_time"),
				row(60, 120, `"k":"a","n":1,"s":1`, "on_time"),
			},
		},
		{
			name: "end of input fires every open window in order",
			yaml: keyed("hopping: {size: 1m, slide: 30s}", "watermark: 1h"),
			events: []ev{
				{d: sec(40), fields: `"k":"b","v":1`},
				{d: sec(10), fields: `"k":"a","v":2`},
				{d: sec(70), fields: `"k":"a","v":3`},
			},
			out: []string{
				row(-30, 30, `"k":"a","n":1,"s":2`, "on_time"),
				row(0, 60, `"k":"a","n":1,"s":2`, "on_time"),
				row(0, 60, `"k":"b","n":1,"s":1`, "on_time"),
				row(30, 90, `"k":"a","n":1,"s":3`, "on_time"),
				row(30, 90, `"k":"b","n":1,"s":1`, "on_time"),
				row(60, 120, `"k":"a","n":1,"s":3`, "on_time"),
			},
		},
		{
			name: "bad records go to dead letters",
			yaml: windowYAML("tumbling: 1m", "event_time: ts", "group_by: ['k + 1']", "aggregate: {s: sum(v)}"),
			events: []ev{
				{d: sec(1), fields: `"k":1,"v":1`},
				{d: sec(2), fields: `"k":"x","v":1`}, // group_by fails: string + int
				{d: sec(3), fields: `"k":1,"v":"x"`}, // sum of a string
				{d: sec(4), fields: `"k":1`},         // null: skipped, counted nowhere
				{d: sec(5), fields: `"k":1,"v":2.5`}, // float turns the sum into a float
				{raw: `{"ts":"yesterday","k":2,"v":1}`},
			},
			out: []string{
				row(0, 60, `"k + 1":2,"s":3.5`, "on_time"),
			},
			dead: []string{
				`group_by: {"ts":"2026-01-01T00:00:02.000Z","k":"x","v":1}`,
				`aggregate: {"ts":"2026-01-01T00:00:03.000Z","k":1,"v":"x"}`,
				`event_time: {"ts":"yesterday","k":2,"v":1}`,
			},
		},
	}
	for _, tt := range tests {
		for _, batch := range []int{1, 1024} {
			t.Run(fmt.Sprintf("%s/batch=%d", tt.name, batch), func(t *testing.T) {
				op := newOperator(t, tt.yaml, nil)
				res := run(t, op, tt.events, batch, true)
				equalLines(t, "output", res.out, tt.out)
				equalLines(t, "dead letters", res.dead, tt.dead)
				if got := op.(*Window).Late(); got != tt.late {
					t.Errorf("Late() = %d, want %d", got, tt.late)
				}
			})
		}
	}
}

// TestWindowIdleInput: an input that stops sending holds the watermark back
// until idle_timeout of wall-clock silence, when a Tick lets it pass.
func TestWindowIdleInput(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	wall := clock.t
	op := newOperator(t, windowYAML("tumbling: 1m", "idle_timeout: 30s", "event_time: ts", "aggregate: {n: count()}"), clock)
	var res runResult
	tick := func(after time.Duration) {
		t.Helper()
		b := &pipeline.Batch{}
		if err := op.(pipeline.Ticker).Tick(context.Background(), wall.Add(after), b); err != nil {
			t.Fatal(err)
		}
		res.take(b)
	}
	feed(t, op, []ev{{d: sec(5), source: 1}, {d: sec(10), source: 0}}, 10, &res)
	clock.t = wall.Add(10 * time.Second)
	feed(t, op, []ev{{d: sec(70), source: 0}, {d: sec(130), source: 0}}, 10, &res)
	equalLines(t, "while input 1 holds the watermark at 5s", res.out, nil)
	tick(20 * time.Second) // input 1 silent for 20s: not idle yet
	equalLines(t, "before the idle timeout", res.out, nil)
	tick(30 * time.Second) // silent for 30s: idle; the watermark moves to 130s
	want := []string{row(0, 60, `"n":2`, "on_time"), row(60, 120, `"n":1`, "on_time")}
	equalLines(t, "after the idle timeout", res.out, want)

	// Input 1 comes back: it holds the watermark again (from 130s, since the
	// watermark never moves back) and its old records are late.
	clock.t = wall.Add(40 * time.Second)
	feed(t, op, []ev{{d: sec(100), source: 1}, {d: sec(150), source: 1}, {d: sec(200), source: 0}}, 10, &res)
	equalLines(t, "after input 1 returns", res.out, want)
	if len(res.dead) != 1 || !strings.HasPrefix(res.dead[0], "late:") {
		t.Errorf("dead letters = %q, want the record at 100s as late", res.dead)
	}
	feed(t, op, []ev{{d: sec(181), source: 1}}, 10, &res)
	want = append(want, row(120, 180, `"n":2`, "on_time"))
	equalLines(t, "input 1 moves the watermark", res.out, want)
	if got := op.(*Window).Late(); got != 1 {
		t.Errorf("Late() = %d, want 1", got)
	}
}

// TestWindowConfigErrors checks that configuration problems are reported at
// their file:line:column.
func TestWindowConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // error text, with position
	}{
		{"no kind", windowYAML("aggregate: {n: count()}"), "p.yaml:6:11: window: needs one of tumbling, hopping or session"},
		{"no aggregates", windowYAML("tumbling: 1m"), "p.yaml:6:11: window: needs `aggregate:`"},
		{"two kinds", windowYAML("tumbling: 1m", "session: {gap: 1s}", "aggregate: {n: count()}"), "p.yaml:7:11: window: tumbling and session: choose one"},
		{"bad duration", windowYAML("tumbling: 1 minute", "aggregate: {n: count()}"), `p.yaml:6:21: window: tumbling: want a duration such as 30s, 1m or 500ms, got "1 minute"`},
		{"negative watermark", windowYAML("tumbling: 1m", "watermark: -5s", "aggregate: {n: count()}"), `p.yaml:7:22: window: watermark: want a positive duration, got "-5s"`},
		{"slide over size", windowYAML("hopping: {size: 10s, slide: 20s}", "aggregate: {n: count()}"), "p.yaml:6:39: window: hopping: slide (20s) must not exceed size (10s)"},
		{"hopping without slide", windowYAML("hopping: {size: 10s}", "aggregate: {n: count()}"), "p.yaml:6:21: window: hopping: needs size and slide"},
		{"sliding without slide", windowYAML("sliding: {size: 10s}", "aggregate: {n: count()}"), "p.yaml:6:21: window: sliding: needs size and slide"},
		{"sliding and tumbling", windowYAML("tumbling: 1m", "sliding: {size: 10s, slide: 5s}", "aggregate: {n: count()}"), "p.yaml:7:11: window: tumbling and sliding: choose one"},
		{"unknown key", windowYAML("tumbling: 1m", "watermarks: 5s", "aggregate: {n: count()}"), `p.yaml:7:11: window: unknown key "watermarks"`},
		{"parallelism", windowYAML("tumbling: 1m", "parallelism: 0", "aggregate: {n: count()}"), `p.yaml:7:24: window: parallelism: want a whole number from 1 to 64, got "0"`},
		{"bad event_time", windowYAML("tumbling: 1m", "event_time: 'ts +* 1'", "aggregate: {n: count()}"), `p.yaml:7:28: window: event_time: expression "ts +* 1"`},
		{"unknown function", windowYAML("tumbling: 1m", "aggregate:", "  p: percentile(x, 0.9)"), `p.yaml:8:16: window: aggregate "p": unknown function "percentile"`},
		{"bad argument", windowYAML("tumbling: 1m", "aggregate:", "  s: sum(a +* b)"), `p.yaml:8:23: window: aggregate "s": expression "a +* b": unexpected token`},
		{"bad argument quoted", windowYAML("tumbling: 1m", "aggregate:", "  q: 'quantile((a +* b), 0.5)'"), `p.yaml:8:30: window: aggregate "q": expression "(a +* b)": unexpected token`},
		{"quantile q", windowYAML("tumbling: 1m", "aggregate:", "  q: quantile(x, 1.5)"), `p.yaml:8:28: window: aggregate "q": quantile: q must be a number from 0 to 1, got "1.5"`},
		{"quantile arity", windowYAML("tumbling: 1m", "aggregate:", "  q: quantile(x)"), `p.yaml:8:24: window: aggregate "q": quantile: want quantile(x, q), got 1 argument(s)`},
		{"collect n", windowYAML("tumbling: 1m", "aggregate:", "  c: collect(x, many)"), `p.yaml:8:27: window: aggregate "c": collect: n must be a whole number from 1 to 10000, got "many"`},
		{"not a call", windowYAML("tumbling: 1m", "aggregate:", "  c: count"), `p.yaml:8:16: window: aggregate "c": want a call such as count()`},
		{"unbalanced", windowYAML("tumbling: 1m", "aggregate:", "  c: 'sum(f(x]))'"), `p.yaml:8:24: window: aggregate "c": unbalanced ']'`},
		{"empty argument", windowYAML("tumbling: 1m", "aggregate:", "  c: arg_max(x, )"), `p.yaml:8:27: window: aggregate "c": empty argument`},
		{"duplicate output name", windowYAML("tumbling: 1m", "group_by: [n]", "aggregate: {n: count()}"), `p.yaml:8:23: window: aggregate "n": output field name already used (a group_by field)`},
		{"reserved name", windowYAML("tumbling: 1m", "aggregate: {firing: count()}"), `p.yaml:7:23: window: aggregate "firing": output field name already used`},
		{"bad group_by", windowYAML("tumbling: 1m", "group_by: [a, 'b +* 1']", "aggregate: {n: count()}"), `p.yaml:7:29: window: group_by: expression "b +* 1"`},
		{"early too long", windowYAML("tumbling: 1m", "early_every: 1m", "aggregate: {n: count()}"), "p.yaml:6:11: window: early_every (1m0s) must be shorter than the window (1m0s)"},
		{"session gap", windowYAML("session: {gap: 0s}", "aggregate: {n: count()}"), `p.yaml:6:26: window: session: gap: want a positive duration, got "0s"`},
		{"empty window", "      - window:\n", "p.yaml:5:9: window: needs one of tumbling, hopping or session"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadOperator(t, tt.yaml)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n  %v\nwant it to contain:\n  %s", err, tt.want)
			}
		})
	}
}

// TestWindowConfigForms checks the accepted spellings of options.
func TestWindowConfigForms(t *testing.T) {
	c, err := loadOperator(t, windowYAML(
		"session: 30s",
		"group_by: [service, 'lower(host)', {region: 'geo.region'}]",
		"aggregate:",
		"  n: count()",
		"  q: 'quantile(latency_ms * 2, 0.5)'",
		"  top: 'arg_max(path, len({a: \"b,c\"}) + len([1, 2]))'",
	))
	if err != nil {
		t.Fatal(err)
	}
	wc := c.(*WindowConfig)
	if wc.Kind != "session" || wc.Gap != 30*time.Second || wc.Parallelism != 1 {
		t.Errorf("kind %q gap %v parallelism %d", wc.Kind, wc.Gap, wc.Parallelism)
	}
	var names []string
	for _, g := range wc.GroupBy {
		names = append(names, g.Name+"="+g.Expr.Source)
	}
	equalLines(t, "group_by", names, []string{"service=service", "lower(host)=lower(host)", "region=geo.region"})
	var aggs []string
	for _, a := range wc.Aggregates {
		var args []string
		for _, e := range a.Args {
			args = append(args, e.Source)
		}
		aggs = append(aggs, fmt.Sprintf("%s=%s(%s) q=%g", a.Name, a.Func, strings.Join(args, " | "), a.Q))
	}
	equalLines(t, "aggregates", aggs, []string{
		"n=count() q=0",
		"q=quantile(latency_ms * 2) q=0.5",
		`top=arg_max(path | len({a: "b,c"}) + len([1, 2])) q=0`,
	})
}

func TestWindowMinHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	h := minHeap[int]{less: func(a, b int) bool { return a < b }}
	var want []int
	for round := range 50 {
		for range rng.IntN(40) {
			v := rng.IntN(100)
			h.push(v)
			want = append(want, v)
		}
		if round%7 == 0 {
			h.init() // a no-op on a valid heap
		}
		for range rng.IntN(h.len() + 1) {
			slices.Sort(want)
			if got := h.pop(); got != want[0] {
				t.Fatalf("pop %d, want %d", got, want[0])
			}
			want = want[1:]
		}
	}
}

// TestWindowConfigInGo: a configuration built in Go is checked when the
// operator is made.
func TestWindowConfigInGo(t *testing.T) {
	count, err := ParseAggregate("n", "count()", pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	p99, err := ParseAggregate("p99", "quantile(latency_ms, 0.99)", pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	good := WindowConfig{Kind: "tumbling", Size: time.Minute, Parallelism: 2, Aggregates: []*Aggregate{count, p99},
		EventTime: pipeline.MustCompileExpr("ts"), GroupBy: []GroupField{{Name: "k", Expr: pipeline.MustCompileExpr("k")}}}
	op, err := good.NewOperator(pipeline.Build{})
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, op, []ev{{d: sec(1), fields: `"k":"a","latency_ms":3`}}, 1, true)
	equalLines(t, "output", res.out, []string{row(0, 60, `"k":"a","n":1,"p99":3.0001207865260024`, "on_time")})
	for _, bad := range []WindowConfig{
		{Kind: "rolling", Size: time.Minute, Aggregates: []*Aggregate{count}},
		{Kind: "hopping", Size: time.Minute, Slide: 2 * time.Minute, Aggregates: []*Aggregate{count}},
		{Kind: "session", Aggregates: []*Aggregate{count}},
		{Kind: "tumbling", Size: time.Minute},
		{Kind: "tumbling", Size: time.Minute, Aggregates: []*Aggregate{{Name: "s", Func: "sum"}}},
		{Kind: "tumbling", Size: time.Minute, Aggregates: []*Aggregate{count, count}},
		{Kind: "tumbling", Size: time.Minute, Watermark: -time.Second, Aggregates: []*Aggregate{count}},
	} {
		if _, err := bad.NewOperator(pipeline.Build{}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestWindowWatermarkAccessor(t *testing.T) {
	op := newOperator(t, windowYAML("tumbling: 1m", "watermark: 5s", "event_time: ts", "aggregate: {n: count()}"), nil).(*Window)
	if !op.Watermark().IsZero() {
		t.Errorf("watermark before any record: %v", op.Watermark())
	}
	feed(t, op, []ev{{d: sec(30)}, {d: sec(20)}}, 10, &runResult{})
	if got, want := op.Watermark(), t0.Add(25*time.Second); !got.Equal(want) {
		t.Errorf("watermark %v, want %v", got, want)
	}
	d := newOperator(t, dedupeYAML("key: id, horizon: 1m, event_time: ts, watermark: 1s"), nil).(*Dedupe)
	feed(t, d, []ev{{d: sec(30), fields: `"id":1`}}, 10, &runResult{})
	if got, want := d.Watermark(), t0.Add(29*time.Second); !got.Equal(want) {
		t.Errorf("dedupe watermark %v, want %v", got, want)
	}
}

// sliding is Flink's name for hopping windows: the same configuration.
func TestWindowSlidingIsHopping(t *testing.T) {
	hop, err := loadOperator(t, windowYAML("hopping: {size: 10s, slide: 5s}", "aggregate: {n: count()}"))
	if err != nil {
		t.Fatal(err)
	}
	sl, err := loadOperator(t, windowYAML("sliding: {size: 10s, slide: 5s}", "aggregate: {n: count()}"))
	if err != nil {
		t.Fatal(err)
	}
	h, s := hop.(*WindowConfig), sl.(*WindowConfig)
	if s.Kind != "hopping" || s.Kind != h.Kind || s.Size != h.Size || s.Slide != h.Slide {
		t.Fatalf("sliding decoded as %s %s/%s, hopping as %s %s/%s", s.Kind, s.Size, s.Slide, h.Kind, h.Size, h.Slide)
	}
}
