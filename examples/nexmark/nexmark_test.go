package nexmark

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
	_ "github.com/weirhq/weir/sinks"
	"github.com/weirhq/weir/sources"
)

// bid is a generated bid, decoded.
type bid struct {
	EventType string `json:"event_type"`
	Auction   int64  `json:"auction"`
	Bidder    int64  `json:"bidder"`
	Price     int64  `json:"price"`
	Channel   string `json:"channel"`
	URL       string `json:"url"`
	DateTime  string `json:"date_time"`
	Extra     string `json:"extra"`
	time      time.Time
}

// base is the nexmark source's default base_time.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// bids generates events 0 .. n-1 for seed and eventRate as the nexmark
// source does, and returns the bids among them in order.
func bids(t testing.TB, seed, n, eventRate int64) []bid {
	t.Helper()
	g := sources.NewNexmarkGenerator(seed, base, eventRate)
	var out []bid
	var buf []byte
	for i := range n {
		if sources.NexmarkKind(i) != "bid" {
			continue
		}
		var ms int64
		buf, ms = g.AppendEvent(buf[:0], i)
		var b bid
		if err := json.Unmarshal(buf, &b); err != nil {
			t.Fatalf("event %d %s: %v", i, buf, err)
		}
		b.time = time.UnixMilli(ms).UTC()
		out = append(out, b)
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// runQuery runs examples/nexmark/<q>.yaml on n events at eventRate and
// returns its output lines, decoded with numbers as json.Number.
func runQuery(t testing.TB, q string, seed, n, eventRate int64) []map[string]any {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	t.Setenv("EVENTS", fmt.Sprint(n))
	t.Setenv("EVENT_RATE", fmt.Sprint(eventRate))
	t.Setenv("SEED", fmt.Sprint(seed))
	t.Setenv("OUT", out)
	t.Setenv("DATA", filepath.Join(dir, "data"))
	cfg, err := pipeline.LoadFile(q + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.Run(context.Background(), cfg, nil, nil, runtime.Options{}); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s: output line %q: %v", q, sc.Text(), err)
		}
		rows = append(rows, m)
	}
	return rows
}

// row builds an expected output row; numbers are written as JSON writes them.
func row(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		v := kv[i+1]
		switch x := v.(type) {
		case int64:
			v = json.Number(fmt.Sprint(x))
		case float64:
			b, _ := json.Marshal(x)
			v = json.Number(b)
		}
		m[kv[i].(string)] = v
	}
	return m
}

func sameRows(t *testing.T, q string, got, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", q, len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: row %d\n got %v\nwant %v", q, i, got[i], want[i])
		}
	}
}

// sortRows orders rows by their JSON text, for results whose order the
// query does not fix.
func sortRows(rows []map[string]any) {
	slices.SortFunc(rows, func(a, b map[string]any) int {
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(b)
		return bytes.Compare(x, y)
	})
}

func TestQ0PassesEveryBid(t *testing.T) {
	const seed, n, rate = 2, 20000, 1000
	var want []map[string]any
	for _, b := range bids(t, seed, n, rate) {
		want = append(want, row("auction", b.Auction, "bidder", b.Bidder, "price", b.Price, "date_time", b.DateTime, "extra", b.Extra))
	}
	sameRows(t, "q0", runQuery(t, "q0", seed, n, rate), want)
}

func TestQ1ConvertsPrices(t *testing.T) {
	const seed, n, rate = 3, 20000, 1000
	var want []map[string]any
	for _, b := range bids(t, seed, n, rate) {
		// 0.908 · price, to the thousandth: an exact integer over 1000.
		want = append(want, row("auction", b.Auction, "bidder", b.Bidder, "price", float64(b.Price*908)/1000, "date_time", b.DateTime, "extra", b.Extra))
	}
	got := runQuery(t, "q1", seed, n, rate)
	sameRows(t, "q1", got, want)
	for _, r := range got[:100] {
		if s := r["price"].(json.Number).String(); strings.Contains(s, ".") && len(s)-strings.IndexByte(s, '.') > 4 {
			t.Fatalf("q1: price %s has more than 3 decimals", s)
		}
	}
}

func TestQ2SelectsEvery123rdAuction(t *testing.T) {
	const seed, n, rate = 4, 200000, 1000
	var want []map[string]any
	for _, b := range bids(t, seed, n, rate) {
		if b.Auction%123 == 0 {
			want = append(want, row("auction", b.Auction, "price", b.Price))
		}
	}
	if len(want) < 50 {
		t.Fatalf("only %d bids selected; the test needs more events", len(want))
	}
	sameRows(t, "q2", runQuery(t, "q2", seed, n, rate), want)
}

// TestQ5HotItems checks q5 against counting bids per auction in every
// 10-second window sliding by 2 seconds, and keeping every auction whose
// count is the window's maximum. At 500 events/s a window holds about
// 4,600 bids over some 300 auctions.
func TestQ5HotItems(t *testing.T) {
	const seed, n, rate = 5, 40000, 500
	const size, slide = 10 * time.Second, 2 * time.Second
	counts := map[time.Time]map[int64]int64{} // window start -> auction -> bids
	for _, b := range bids(t, seed, n, rate) {
		last := b.time.Truncate(slide)
		for s := last; s.After(b.time.Add(-size)); s = s.Add(-slide) {
			if counts[s] == nil {
				counts[s] = map[int64]int64{}
			}
			counts[s][b.Auction]++
		}
	}
	var want []map[string]any
	ties := 0
	for _, s := range slices.SortedFunc(maps.Keys(counts), time.Time.Compare) {
		top := slices.Max(slices.Collect(maps.Values(counts[s])))
		var at []int64
		for a, c := range counts[s] {
			if c == top {
				at = append(at, a)
			}
		}
		ties += len(at) - 1
		for _, a := range at {
			want = append(want, row("auction", a, "num", top, "window_start", stamp(s), "window_end", stamp(s.Add(size))))
		}
	}
	got := runQuery(t, "q5", seed, n, rate)
	sortRows(got)
	sortRows(want)
	sameRows(t, "q5", got, want)
	t.Logf("q5: %d windows, %d rows, %d of them ties", len(counts), len(want), ties)
}

// TestQ5KeepsTies runs q5 where ties for the most bids are common: the
// first events, at 10 events/s, before the hot auction pulls ahead.
func TestQ5KeepsTies(t *testing.T) {
	const seed, n, rate = 1, 400, 10
	counts := map[time.Time]map[int64]int64{}
	for _, b := range bids(t, seed, n, rate) {
		for s := b.time.Truncate(2 * time.Second); s.After(b.time.Add(-10 * time.Second)); s = s.Add(-2 * time.Second) {
			if counts[s] == nil {
				counts[s] = map[int64]int64{}
			}
			counts[s][b.Auction]++
		}
	}
	var want []map[string]any
	for s, byAuction := range counts {
		top := slices.Max(slices.Collect(maps.Values(byAuction)))
		for a, c := range byAuction {
			if c == top {
				want = append(want, row("auction", a, "num", top, "window_start", stamp(s), "window_end", stamp(s.Add(10*time.Second))))
			}
		}
	}
	if len(want) <= len(counts) {
		t.Fatalf("no ties in %d windows; pick other parameters", len(counts))
	}
	got := runQuery(t, "q5", seed, n, rate)
	sortRows(got)
	sortRows(want)
	sameRows(t, "q5", got, want)
}

// TestQ11UserSessions checks q11 against splitting each bidder's bids
// where 10 seconds pass without one. At 20 events/s the random bidders
// bid rarely enough to have many sessions each.
func TestQ11UserSessions(t *testing.T) {
	const seed, n, rate = 6, 60000, 20
	const gap = 10 * time.Second
	byBidder := map[int64][]time.Time{}
	for _, b := range bids(t, seed, n, rate) {
		byBidder[b.Bidder] = append(byBidder[b.Bidder], b.time)
	}
	var want []map[string]any
	for bidder, times := range byBidder {
		start, count := times[0], int64(1)
		for k := 1; k <= len(times); k++ {
			if k < len(times) && times[k].Sub(times[k-1]) < gap {
				count++
				continue
			}
			end := times[k-1].Add(gap)
			want = append(want, row("bidder", bidder, "bid_count", count, "starttime", stamp(start), "endtime", stamp(end),
				"window_start", stamp(start), "window_end", stamp(end)))
			if k < len(times) {
				start, count = times[k], 1
			}
		}
	}
	if len(want) < 2*len(byBidder) {
		t.Fatalf("%d sessions for %d bidders: too few to test sessions", len(want), len(byBidder))
	}
	got := runQuery(t, "q11", seed, n, rate)
	sortRows(got)
	sortRows(want)
	sameRows(t, "q11", got, want)
}

// TestQ14Calculation checks q14 over 100,000 events at 1 event/s, which
// span 28 hours, so every time-of-day type occurs.
func TestQ14Calculation(t *testing.T) {
	const seed, n, rate = 7, 100000, 1
	var want []map[string]any
	types := map[string]int{}
	for _, b := range bids(t, seed, n, rate) {
		euros := float64(b.Price*908) / 1000
		if !(euros > 1_000_000 && euros < 50_000_000) {
			continue
		}
		kind := "otherTime"
		switch h := b.time.Hour(); {
		case h >= 8 && h <= 18:
			kind = "dayTime"
		case h <= 6 || h >= 20:
			kind = "nightTime"
		}
		types[kind]++
		want = append(want, row("auction", b.Auction, "bidder", b.Bidder, "price", euros, "bid_time_type", kind,
			"date_time", b.DateTime, "extra", b.Extra, "c_counts", int64(strings.Count(b.Extra, "c"))))
	}
	if len(types) != 3 {
		t.Fatalf("time-of-day types %v: the test needs all three", types)
	}
	sameRows(t, "q14", runQuery(t, "q14", seed, n, rate), want)
}

func TestQ21ChannelID(t *testing.T) {
	const seed, n, rate = 8, 20000, 1000
	hot := map[string]string{"apple": "0", "google": "1", "facebook": "2", "baidu": "3"}
	var want []map[string]any
	var fromURL, left int
	for _, b := range bids(t, seed, n, rate) {
		id, ok := hot[strings.ToLower(b.Channel)]
		if !ok {
			// REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
			_, after, found := strings.Cut(b.URL, "&channel_id=")
			if !found {
				left++
				continue
			}
			id, _, _ = strings.Cut(after, "&")
			fromURL++
		}
		want = append(want, row("auction", b.Auction, "bidder", b.Bidder, "price", b.Price, "channel", b.Channel, "channel_id", id))
	}
	if fromURL == 0 || left == 0 {
		t.Fatalf("%d ids from urls, %d bids left out: the test needs both", fromURL, left)
	}
	sameRows(t, "q21", runQuery(t, "q21", seed, n, rate), want)
}

func TestQ22URLDirectories(t *testing.T) {
	const seed, n, rate = 9, 20000, 1000
	var want []map[string]any
	for _, b := range bids(t, seed, n, rate) {
		parts := strings.Split(b.URL, "/") // SPLIT_INDEX counts from 0
		want = append(want, row("auction", b.Auction, "bidder", b.Bidder, "price", b.Price, "channel", b.Channel,
			"dir1", parts[3], "dir2", parts[4], "dir3", parts[5]))
	}
	sameRows(t, "q22", runQuery(t, "q22", seed, n, rate), want)
}

// TestQ10PartitionedFiles checks q10 over 20,000 events at 100 events/s
// (200 s, so four minutes' partitions): each file holds exactly its
// minute's bids, in order.
func TestQ10PartitionedFiles(t *testing.T) {
	const seed, n, rate = 10, 20000, 100
	want := map[string][]map[string]any{}
	for _, b := range bids(t, seed, n, rate) {
		dt, hm := b.time.Format("2006-01-02"), b.time.Format("15:04")
		file := "dt=" + dt + "/hm=" + strings.ReplaceAll(hm, ":", "%3A") + ".jsonl"
		want[file] = append(want[file], row("auction", b.Auction, "bidder", b.Bidder, "price", b.Price,
			"date_time", b.DateTime, "extra", b.Extra, "dt", dt, "hm", hm))
	}
	if len(want) < 3 {
		t.Fatalf("%d partitions: the test needs several", len(want))
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "q10")
	t.Setenv("EVENTS", fmt.Sprint(n))
	t.Setenv("EVENT_RATE", fmt.Sprint(rate))
	t.Setenv("SEED", fmt.Sprint(seed))
	t.Setenv("OUT", out)
	t.Setenv("DATA", filepath.Join(dir, "data"))
	cfg, err := pipeline.LoadFile("q10.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.Run(context.Background(), cfg, nil, nil, runtime.Options{}); err != nil {
		t.Fatal(err)
	}
	got := map[string][]map[string]any{}
	err = filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".weir-lock") {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			dec := json.NewDecoder(strings.NewReader(line))
			dec.UseNumber()
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				return fmt.Errorf("%s: %q: %w", rel, line, err)
			}
			got[filepath.ToSlash(rel)] = append(got[filepath.ToSlash(rel)], m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("files %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for f := range want {
		sameRows(t, "q10 "+f, got[f], want[f])
	}
}

// TestQ5RefusesToTruncateTies runs q5 with collect() limited to one
// auction per count: every window where auctions tie for the most bids
// must then go to the dead-letter output, never come out short.
func TestQ5RefusesToTruncateTies(t *testing.T) {
	const seed, n, rate = 1, 400, 10
	counts := map[time.Time]map[int64]int64{}
	for _, b := range bids(t, seed, n, rate) {
		for s := b.time.Truncate(2 * time.Second); s.After(b.time.Add(-10 * time.Second)); s = s.Add(-2 * time.Second) {
			if counts[s] == nil {
				counts[s] = map[int64]int64{}
			}
			counts[s][b.Auction]++
		}
	}
	var want []map[string]any
	tied := 0
	for s, byAuction := range counts {
		top := slices.Max(slices.Collect(maps.Values(byAuction)))
		var at []int64
		for a, c := range byAuction {
			if c == top {
				at = append(at, a)
			}
		}
		if len(at) > 1 {
			tied++
			continue
		}
		want = append(want, row("auction", at[0], "num", top, "window_start", stamp(s), "window_end", stamp(s.Add(10*time.Second))))
	}
	if tied == 0 {
		t.Fatal("no window has ties; pick other parameters")
	}
	text, err := os.ReadFile("q5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dead := filepath.Join(dir, "dead.jsonl")
	yaml := strings.Replace(string(text), "collect(auction, 10000)", "collect(auction, 1)", 1)
	yaml = strings.Replace(yaml, "    sinks:\n", "    dead_letter: { file: { path: \""+dead+"\" } }\n    sinks:\n", 1)
	if yaml == string(text) || !strings.Contains(yaml, "collect(auction, 1)") || !strings.Contains(yaml, "dead_letter") {
		t.Fatal("could not rewrite q5.yaml")
	}
	q := filepath.Join(dir, "q5-limited")
	if err := os.WriteFile(q+".yaml", []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	got := runQuery(t, q, seed, n, rate)
	sortRows(got)
	sortRows(want)
	sameRows(t, "q5 with collect(auction, 1)", got, want)
	data, err := os.ReadFile(dead)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != tied {
		t.Fatalf("%d dead letters, want one per window with ties: %d", len(lines), tied)
	}
	for _, l := range lines {
		if !strings.Contains(l, `"reason":"map"`) || !strings.Contains(l, "more than 10000 auctions tie") {
			t.Fatalf("dead letter %s", l)
		}
	}
}
