package sources

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/weirhq/weir/pipeline"
)

func newGenerate(t testing.TB, c *GenerateConfig, batch int) pipeline.Source {
	t.Helper()
	src, err := c.NewSource(testBuild(t, batch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	return src
}

func TestGenerateShape(t *testing.T) {
	src := newGenerate(t, &GenerateConfig{Seed: 7, Count: 2000}, 512)
	g := readToEOF(t, src, 512)
	if len(g.recs) != 2000 {
		t.Fatalf("got %d records", len(g.recs))
	}
	levels := map[string]int{}
	for i, r := range g.recs {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("record %d %q: %v", i, r.Value, err)
		}
		if len(m) != 6 {
			t.Fatalf("record %d has fields %v", i, m)
		}
		wantTS := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(7 * time.Millisecond * time.Duration(i))
		if m["ts"] != wantTS.Format("2006-01-02T15:04:05.000Z") || !r.Time.Equal(wantTS) {
			t.Fatalf("record %d: ts %v, Time %v, want %v", i, m["ts"], r.Time, wantTS)
		}
		if r.Origin.Name != "generate" || r.Origin.Offset != int64(i) || r.Source != 3 {
			t.Fatalf("record %d: origin %+v source %d", i, r.Origin, r.Source)
		}
		// Already parsed: the fields are the JSON object.
		if !r.Parsed() || r.Get("level") != m["level"] || r.Get("service") != m["service"] {
			t.Fatalf("record %d not parsed: %v", i, r.Fields().Map())
		}
		if st, ok := r.Get("status").(int64); !ok || float64(st) != m["status"] {
			t.Fatalf("record %d: status %v", i, r.Get("status"))
		}
		if l, ok := m["latency_ms"].(float64); !ok || l < 0 || l != math.Round(l*1000)/1000 {
			t.Fatalf("record %d: latency_ms %v", i, m["latency_ms"])
		}
		levels[m["level"].(string)]++
	}
	// 70/15/10/5 %, loosely.
	for lvl, want := range map[string]float64{"info": .70, "warn": .15, "error": .10, "debug": .05} {
		if got := float64(levels[lvl]) / 2000; math.Abs(got-want) > 0.04 {
			t.Errorf("level %s: %.3f of records, want about %.2f", lvl, got, want)
		}
	}
}

// TestGenerateDeterministic: record i depends only on (seed, i), not on
// batching; another seed gives other records.
func TestGenerateDeterministic(t *testing.T) {
	a := readToEOF(t, newGenerate(t, &GenerateConfig{Seed: 1, Count: 3000}, 1024), 1024).values()
	b := readToEOF(t, newGenerate(t, &GenerateConfig{Seed: 1, Count: 3000}, 7), 7).values()
	equalStrings(t, "batch 1024 vs 7", b, a)
	for _, i := range []int{0, 1, 999, 2999} {
		line, _ := appendGenerated(nil, 1, int64(i))
		if string(line) != a[i] {
			t.Fatalf("record %d: %q, standalone %q", i, a[i], line)
		}
	}
	c := readToEOF(t, newGenerate(t, &GenerateConfig{Seed: 2, Count: 3000}, 1024), 1024).values()
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > 300 {
		t.Fatalf("seeds 1 and 2 share %d of 3000 records", same)
	}
}

func TestGeneratePositionSeek(t *testing.T) {
	all := readToEOF(t, newGenerate(t, &GenerateConfig{Seed: 5, Count: 1000}, 100), 100).values()
	src := newGenerate(t, &GenerateConfig{Seed: 5, Count: 1000}, 100)
	first := readN(t, src, 300)
	pos, err := src.(pipeline.Positioned).Position()
	if err != nil || string(pos) != `{"next":300}` {
		t.Fatalf("Position = %s, %v", pos, err)
	}
	src2 := newGenerate(t, &GenerateConfig{Seed: 5, Count: 1000}, 100)
	if err := src2.(pipeline.Positioned).Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	rest := readToEOF(t, src2, 100)
	equalStrings(t, "replay", append(first.values(), rest.values()...), all)
	if rest.recs[0].Origin.Offset != 300 {
		t.Fatalf("first record after Seek: %+v", rest.recs[0].Origin)
	}
	// The watermark is the event time of the last record returned.
	wm, ok := src2.(pipeline.WatermarkSource).Watermark()
	if last := rest.recs[len(rest.recs)-1]; !ok || !wm.Equal(last.Time) {
		t.Fatalf("watermark %v %v, want %v", wm, ok, last.Time)
	}
	if _, ok := newGenerate(t, &GenerateConfig{}, 10).(pipeline.WatermarkSource).Watermark(); ok {
		t.Fatal("a watermark before any record")
	}
	for _, bad := range []string{`{`, `{"next":-1}`} {
		if err := src2.(pipeline.Positioned).Seek(context.Background(), []byte(bad)); err == nil {
			t.Errorf("Seek(%s) accepted", bad)
		}
	}
}

// TestGenerateRate checks pacing by counting records over a short window:
// never ahead of the schedule (rate × elapsed, plus the one due at the
// start), and not far behind it.
func TestGenerateRate(t *testing.T) {
	const rate = 2000
	src := newGenerate(t, &GenerateConfig{Seed: 1, Rate: rate}, 1024)
	start := time.Now()
	n := 0
	for time.Since(start) < 600*time.Millisecond {
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		n += len(b.Records)
		if limit := rate*time.Since(start).Seconds() + 1; float64(n) > limit {
			t.Fatalf("%d records after %v: ahead of the %d/s schedule", n, time.Since(start), rate)
		}
	}
	if want := rate * 0.6 * 0.5; float64(n) < want {
		t.Fatalf("only %d records in %v at %d/s", n, time.Since(start), rate)
	}

	// A slow rate still gives control back with empty batches.
	slow := newGenerate(t, &GenerateConfig{Rate: 0.5}, 10)
	readN(t, slow, 1) // record 0 is due at once
	b := &pipeline.Batch{}
	if _, err := slow.Read(context.Background(), b); err != nil || len(b.Records) != 0 {
		t.Fatalf("slow rate: %v, %d records", err, len(b.Records))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := slow.Read(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Read: %v", err)
	}
}

func TestGenerateConfig(t *testing.T) {
	c := NewGenerateConfig()
	if err := yaml.UnmarshalWithOptions([]byte(`{rate: 1000, seed: 1, count: 100000}`), c, yaml.DisallowUnknownField()); err != nil {
		t.Fatal(err)
	}
	if c.Rate != 1000 || c.Seed != 1 || c.Count != 100000 || c.Validate() != nil {
		t.Fatalf("decoded %+v", c)
	}
	for _, bad := range []GenerateConfig{{Rate: -1}, {Rate: math.Inf(1)}, {Count: -5}} {
		if bad.Validate() == nil {
			t.Errorf("Validate accepted %+v", bad)
		}
	}
	// Endless by default.
	src := newGenerate(t, NewGenerateConfig(), 1024)
	for range 20 {
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); errors.Is(err, io.EOF) || len(b.Records) != 1024 {
			t.Fatalf("endless source: %v, %d records", err, len(b.Records))
		}
	}
	if _, ok := pipeline.Default.Lookup(pipeline.KindSource, "generate"); !ok {
		t.Fatal("generate is not registered")
	}
}
