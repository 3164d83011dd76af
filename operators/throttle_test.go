package operators

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// throttleInput: service a sends 5 records in each second, b 1, for 3 s,
// with event times in field ts.
func throttleInput() []string {
	var lines []string
	for s := range 3 {
		for i := range 5 {
			lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:0%d.%d00Z","service":"a","n":%d}`, s, i, s*10+i))
		}
		lines = append(lines, fmt.Sprintf(`{"ts":"2026-01-01T00:00:0%d.900Z","service":"b","n":%d}`, s, s*10+9))
	}
	return lines
}

func throttleRun(t *testing.T, op pipeline.Operator, lines []string, batch int) (kept []string, dead []string) {
	t.Helper()
	for i := 0; i < len(lines); i += batch {
		b := jsonBatch(t, lines[i:min(i+batch, len(lines))]...)
		if err := op.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			kept = append(kept, fmt.Sprint(r.Get("n")))
		}
		for _, d := range b.Dead {
			dead = append(dead, d.Reason+": "+fmt.Sprint(d.Record.Get("n"))+": "+d.Error)
		}
	}
	return kept, dead
}

func TestThrottlePerKeyAndInterval(t *testing.T) {
	const op = `throttle: {rate: 2, per: 1s, key: service, event_time: ts}`
	want := "0 1 9 10 11 19 20 21 29" // 2 of a's 5 per second, all of b
	for _, batch := range []int{1, 4, 100} {
		kept, dead := throttleRun(t, buildOp(t, op), throttleInput(), batch)
		if got := strings.Join(kept, " "); got != want || len(dead) != 0 {
			t.Errorf("batches of %d: kept %s, dead %v; want %s and none dead", batch, got, dead, want)
		}
	}
	kept, dead := throttleRun(t, buildOp(t, `throttle: {rate: 2, per: 1s, key: service, event_time: ts, action: dead_letter}`), throttleInput(), 3)
	if got := strings.Join(kept, " "); got != want || len(dead) != 9 {
		t.Fatalf("dead_letter: kept %s, %d dead; want %s and 9 dead", got, len(dead), want)
	}
	if w := `throttle: 2: throttle: key "a" is over 2 records per 1s in the interval from 2026-01-01T00:00:00.000Z`; dead[0] != w {
		t.Fatalf("dead letter %q; want %q", dead[0], w)
	}
	// Without a key, one budget; a 3 s interval.
	kept, _ = throttleRun(t, buildOp(t, `throttle: {rate: 4, per: 3s, event_time: ts}`), throttleInput(), 5)
	if got := strings.Join(kept, " "); got != "0 1 2 3" {
		t.Fatalf("one budget: kept %s", got)
	}
}

// Counts survive a checkpoint: a run restored from a snapshot taken
// midway lets through what an uninterrupted run does.
func TestThrottleSnapshotRestore(t *testing.T) {
	const op = `throttle: {rate: 2, per: 1s, key: service, event_time: ts}`
	lines := throttleInput()
	whole, _ := throttleRun(t, buildOp(t, op), lines, 100)
	first := buildOp(t, op)
	k1, _ := throttleRun(t, first, lines[:3], 100) // mid-second: a has used its 2
	state, err := first.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	second := buildOp(t, op)
	if err := second.(pipeline.Snapshotter).Restore(state); err != nil {
		t.Fatal(err)
	}
	k2, _ := throttleRun(t, second, lines[3:], 100)
	if got, want := strings.Join(append(k1, k2...), " "), strings.Join(whole, " "); got != want {
		t.Fatalf("restored run kept %s; uninterrupted %s", got, want)
	}
	if err := second.(pipeline.Snapshotter).Restore([]byte("{bad")); err == nil {
		t.Fatal("bad state restored")
	}
}

func TestThrottleBadRecords(t *testing.T) {
	op := buildOp(t, `throttle: {rate: 1, event_time: ts}`)
	b := jsonBatch(t, `{"ts":"yesterday"}`)
	_ = op.Process(context.Background(), b)
	if len(b.Records) != 0 || len(b.Dead) != 1 || b.Dead[0].Reason != "event_time" {
		t.Fatalf("a bad event time: %d kept, dead %+v", len(b.Records), b.Dead)
	}
}

func TestThrottleConfigErrors(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{"      - throttle: {per: 1s}\n", "throttle: needs `rate:`"},
		{"      - throttle: {rate: 0}\n", `throttle: rate: want a whole number from 1`},
		{"      - throttle: {rate: 5, action: queue}\n", `p.yaml:5:37: throttle: action: "queue" is not one of drop, dead_letter`},
		{"      - throttle: {rate: 5, per: 0s, burst: 2}\n", `throttle: unknown key "burst"`},
	} {
		_, err := loadOperator(t, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", strings.TrimSpace(c.op), err, c.want)
		}
	}
	// Every mistake at once.
	_, err := loadOperator(t, "      - throttle: {rate: 0, per: 0s, action: x}\n")
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three errors, got %v", err)
	}
}
