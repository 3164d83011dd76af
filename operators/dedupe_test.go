package operators

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func dedupeYAML(opts string) string { return "      - dedupe: {" + opts + "}\n" }

func TestDedupe(t *testing.T) {
	tests := []struct {
		name         string
		opts         string
		events       []ev
		kept         []string // ids of kept records, in order
		dead         []string
		dups, evicts int64
		keys         int
	}{
		{
			name: "within the horizon, before or after",
			opts: "key: id, horizon: 10s, event_time: ts, watermark: 1h",
			events: []ev{
				{d: sec(0), fields: `"id":"a","n":1`},
				{d: sec(5), fields: `"id":"a","n":2`},  // 5s after: duplicate
				{d: sec(-3), fields: `"id":"a","n":3`}, // 3s before: duplicate
				{d: sec(10), fields: `"id":"a","n":4`}, // 10s after: kept, remembered at 10s
				{d: sec(11), fields: `"id":"b","n":5`},
				{d: sec(19), fields: `"id":"a","n":6`}, // 9s after 10s: duplicate
				{d: sec(12), fields: `"n":7`},          // no key: passes
				{d: sec(13), fields: `"n":8`},
				{d: sec(14), fields: `"id":2,"n":9`},
				{d: sec(15), fields: `"id":2.0,"n":10`}, // the same number
				{d: sec(16), fields: `"id":"2","n":11`}, // a string is another key
			},
			kept: []string{"1", "4", "5", "7", "8", "9", "11"},
			dups: 4, keys: 4,
		},
		{
			name: "keys expire with the watermark",
			opts: "key: id, horizon: 10s, event_time: ts",
			events: []ev{
				{d: sec(0), fields: `"id":"a","n":1`},
				{d: sec(9), fields: `"id":"a","n":2`},  // duplicate
				{d: sec(20), fields: `"id":"b","n":3`}, // watermark 20s >= 0s+10s: a forgotten
				{d: sec(5), fields: `"id":"a","n":4`},  // too late to be checked: passes
				{d: sec(25), fields: `"id":"b","n":5`}, // duplicate
			},
			kept: []string{"1", "3", "4"},
			dups: 2, keys: 1,
		},
		{
			name: "max_keys evicts the oldest",
			opts: "key: id, horizon: 1h, event_time: ts, max_keys: 3",
			events: []ev{
				{d: sec(3), fields: `"id":"c","n":1`},
				{d: sec(1), fields: `"id":"a","n":2`},
				{d: sec(2), fields: `"id":"b","n":3`},
				{d: sec(4), fields: `"id":"d","n":4`}, // a (1s) is evicted
				{d: sec(5), fields: `"id":"a","n":5`}, // forgotten: passes, evicts b
				{d: sec(6), fields: `"id":"c","n":6`}, // duplicate
			},
			kept: []string{"1", "2", "3", "4", "5"},
			dups: 1, evicts: 2, keys: 3,
		},
		{
			name: "bad records",
			opts: "key: 'id + 1', horizon: 1m, event_time: ts",
			events: []ev{
				{d: sec(1), fields: `"id":1,"n":1`},
				{d: sec(2), fields: `"id":"x","n":2`},
				{raw: `{"id":1,"n":3}`},
				{d: sec(3), fields: `"id":1,"n":4`},
			},
			kept: []string{"1"},
			dead: []string{`dedupe: {"ts":"2026-01-01T00:00:02.000Z","id":"x","n":2}`, `event_time: {"id":1,"n":3}`},
			dups: 1, keys: 1,
		},
	}
	for _, tt := range tests {
		for _, batch := range []int{1, 4, 100} {
			t.Run(fmt.Sprintf("%s/batch=%d", tt.name, batch), func(t *testing.T) {
				op := newOperator(t, dedupeYAML(tt.opts), nil)
				res := run(t, op, tt.events, batch, false)
				var kept []string
				for _, line := range res.out {
					i := strings.Index(line, `"n":`)
					kept = append(kept, strings.TrimSuffix(line[i+4:], "}"))
				}
				equalLines(t, "kept", kept, tt.kept)
				equalLines(t, "dead letters", res.dead, tt.dead)
				d := op.(*Dedupe)
				if d.Duplicates() != tt.dups || d.Evicted() != tt.evicts || d.Keys() != tt.keys {
					t.Errorf("duplicates %d evicted %d keys %d, want %d %d %d", d.Duplicates(), d.Evicted(), d.Keys(), tt.dups, tt.evicts, tt.keys)
				}
			})
		}
	}
}

func dedupeStream(seed uint64, n int) []ev {
	rng := rand.New(rand.NewPCG(seed, 3))
	var out []ev
	now := time.Duration(0)
	for i := range n {
		now += time.Duration(rng.IntN(1000)) * time.Millisecond
		out = append(out, ev{d: now - time.Duration(rng.IntN(3000))*time.Millisecond, fields: fmt.Sprintf(`"id":%d,"n":%d`, rng.IntN(300), i), source: i % 2})
	}
	return out
}

// TestDedupeSnapshotRestore: a snapshot taken anywhere and restored into a
// new operator continues exactly as an uninterrupted run, whatever the
// batching.
func TestDedupeSnapshotRestore(t *testing.T) {
	const opts = "key: id, horizon: 30s, event_time: ts, watermark: 2s, max_keys: 40"
	events := dedupeStream(1, 3000)
	ref := newOperator(t, dedupeYAML(opts), nil)
	want := run(t, ref, events, 1000, false)
	if d := ref.(*Dedupe); d.Duplicates() == 0 || d.Evicted() == 0 {
		t.Fatalf("weak test: %d duplicates, %d evicted", d.Duplicates(), d.Evicted())
	}
	for _, cut := range []int{0, 17, 1500, 2999} {
		first := newOperator(t, dedupeYAML(opts), nil)
		var got runResult
		feed(t, first, events[:cut], 7, &got)
		state, err := first.(pipeline.Snapshotter).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		second := newOperator(t, dedupeYAML(opts), nil)
		if err := second.(pipeline.Snapshotter).Restore(state); err != nil {
			t.Fatal(err)
		}
		if again, _ := second.(pipeline.Snapshotter).Snapshot(); !bytes.Equal(again, state) {
			t.Errorf("cut %d: snapshot after restore differs", cut)
		}
		feed(t, second, events[cut:], 13, &got)
		equalLines(t, fmt.Sprintf("cut %d", cut), got.out, want.out)
		a, b := second.(*Dedupe), ref.(*Dedupe)
		if a.Duplicates() != b.Duplicates() || a.Evicted() != b.Evicted() || a.Keys() != b.Keys() {
			t.Errorf("cut %d: counters %d/%d/%d, want %d/%d/%d", cut, a.Duplicates(), a.Evicted(), a.Keys(), b.Duplicates(), b.Evicted(), b.Keys())
		}
	}
	other := newOperator(t, dedupeYAML("key: id, horizon: 1m"), nil)
	state, _ := ref.(pipeline.Snapshotter).Snapshot()
	if err := other.(pipeline.Snapshotter).Restore(state); err == nil || !strings.Contains(err.Error(), "horizon") {
		t.Errorf("restore with another horizon: %v", err)
	}
	for i := range state {
		bad := bytes.Clone(state)
		bad[i] ^= 0xff
		if err := other.(pipeline.Snapshotter).Restore(bad); err == nil {
			t.Fatalf("flipped byte %d: no error", i)
		}
	}
}

func TestDedupeConfigErrors(t *testing.T) {
	tests := []struct{ opts, want string }{
		{"horizon: 1m", "p.yaml:5:18: dedupe: needs `key:`"},
		{"key: id", "p.yaml:5:18: dedupe: needs `horizon:`"},
		{"key: 'a +* b', horizon: 1m", `p.yaml:5:27: dedupe: key: expression "a +* b"`},
		{"key: id, horizon: soon", `p.yaml:5:36: dedupe: horizon: want a duration`},
		{"key: id, horizon: 1m, max_keys: 0", `p.yaml:5:50: dedupe: max_keys: want a whole number from 1`},
		{"key: id, horizon: 1m, keys: 5", `p.yaml:5:40: dedupe: unknown key "keys"`},
	}
	for _, tt := range tests {
		_, err := loadOperator(t, dedupeYAML(tt.opts))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\n  got  %v\n  want %s", tt.opts, err, tt.want)
		}
	}
}

// FuzzDedupeRestore: no state, however corrupt, makes Restore panic.
func FuzzDedupeRestore(f *testing.F) {
	const opts = "key: id, horizon: 30s, event_time: ts, max_keys: 40"
	op := newOperator(f, dedupeYAML(opts), nil)
	feed(f, op, dedupeStream(1, 300), 50, &runResult{})
	state, err := op.(pipeline.Snapshotter).Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(state[:len(state)-4])
	target := newOperator(f, dedupeYAML(opts), nil).(pipeline.Snapshotter)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := &stateWriter{b: bytes.Clone(body)}
		_ = target.Restore(w.finish())
	})
}
