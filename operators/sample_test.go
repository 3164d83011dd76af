package operators

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

func sampleLines(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"trace_id":"%016x","span":%d}`, i/4, i) // 4 spans per trace
	}
	return lines
}

// The records kept depend on the key alone: the same on every run and in
// any batching, a key kept or dropped whole, and about rate of them.
func TestSampleIsDeterministicByKey(t *testing.T) {
	lines := sampleLines(40000)
	keptBy := func(op string, batch int) map[string]bool {
		o := buildOp(t, op)
		kept := map[string]bool{}
		for i := 0; i < len(lines); i += batch {
			b := jsonBatch(t, lines[i:min(i+batch, len(lines))]...)
			if err := o.Process(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			for _, r := range b.Records {
				kept[string(r.Value)] = true
			}
		}
		return kept
	}
	a := keptBy(`sample: {rate: 0.25, key: trace_id}`, 1024)
	b := keptBy(`sample: {rate: 0.25, key: trace_id}`, 7)
	if len(a) != len(b) {
		t.Fatalf("batching changed the sample: %d vs %d records", len(a), len(b))
	}
	for k := range a {
		if !b[k] {
			t.Fatalf("batching changed the sample: %s", k)
		}
	}
	traces := map[string]int{}
	for k := range a {
		traces[k[13:29]]++
	}
	for tr, n := range traces {
		if n != 4 {
			t.Fatalf("trace %s kept %d of its 4 spans; a key is kept whole", tr, n)
		}
	}
	// 10000 traces at 25%: 2500 expected, sd ~43; 6 sd either way.
	if n := len(traces); math.Abs(float64(n)-2500) > 260 {
		t.Fatalf("kept %d of 10000 traces at rate 0.25", n)
	}
	// Without a key, by the record's bytes: about rate of the records.
	if n := len(keptBy(`sample: 0.1`, 1024)); math.Abs(float64(n)-4000) > 360 {
		t.Fatalf("kept %d of 40000 records at rate 0.1", n)
	}
	if n := len(keptBy(`sample: 1`, 1024)); n != 40000 {
		t.Fatalf("rate 1 kept %d of 40000", n)
	}
	if n := len(keptBy(`sample: 0`, 1024)); n != 0 {
		t.Fatalf("rate 0 kept %d", n)
	}
}

// A higher rate keeps a superset: raising the rate only adds keys.
func TestSampleRatesNest(t *testing.T) {
	lines := sampleLines(4000)
	lo, hi := buildOp(t, `sample: {rate: 0.1, key: span}`), buildOp(t, `sample: {rate: 0.3, key: span}`)
	bl, bh := jsonBatch(t, lines...), jsonBatch(t, lines...)
	_ = lo.Process(context.Background(), bl)
	_ = hi.Process(context.Background(), bh)
	inHi := map[string]bool{}
	for _, r := range bh.Records {
		inHi[string(r.Value)] = true
	}
	for _, r := range bl.Records {
		if !inHi[string(r.Value)] {
			t.Fatalf("%s kept at 0.1 but not at 0.3", r.Value)
		}
	}
}

func TestSampleConfigErrors(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{"      - sample: 1.5\n", `p.yaml:5:17: sample: rate: want a fraction from 0 to 1, such as 0.1, got "1.5"`},
		{"      - sample: {rate: half}\n", `sample: rate: want a fraction from 0 to 1, such as 0.1, got "half"`},
		{"      - sample: {key: id}\n", "sample: needs `rate:`"},
		{"      - sample: {rate: 0.1, key: 'lenn(id)'}\n", "unknown function lenn (did you mean len?)"},
	} {
		_, err := loadOperator(t, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", strings.TrimSpace(c.op), err, c.want)
		}
	}
}
