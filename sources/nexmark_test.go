package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// nexmarkJSON is one decoded event, every type's fields together.
type nexmarkJSON struct {
	EventType    string `json:"event_type"`
	ID           int64  `json:"id"`
	Name         string `json:"name"`
	EmailAddress string `json:"email_address"`
	CreditCard   string `json:"credit_card"`
	City         string `json:"city"`
	State        string `json:"state"`
	ItemName     string `json:"item_name"`
	Description  string `json:"description"`
	InitialBid   int64  `json:"initial_bid"`
	Reserve      int64  `json:"reserve"`
	Expires      string `json:"expires"`
	Seller       int64  `json:"seller"`
	Category     int64  `json:"category"`
	Auction      int64  `json:"auction"`
	Bidder       int64  `json:"bidder"`
	Price        int64  `json:"price"`
	Channel      string `json:"channel"`
	URL          string `json:"url"`
	DateTime     string `json:"date_time"`
	Extra        string `json:"extra"`
}

func readNexmark(t testing.TB, c *NexmarkConfig, batch int) []*pipeline.Record {
	t.Helper()
	src, err := c.NewSource(testBuild(t, batch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	return readToEOF(t, src, batch).recs
}

func decodeNexmark(t testing.TB, recs []*pipeline.Record) []nexmarkJSON {
	t.Helper()
	out := make([]nexmarkJSON, len(recs))
	for i, r := range recs {
		dec := json.NewDecoder(bytes.NewReader(r.Value))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out[i]); err != nil {
			t.Fatalf("event %d %s: %v", i, r.Value, err)
		}
	}
	return out
}

func TestNexmarkProportionsAndFields(t *testing.T) {
	const n = 5000
	recs := readNexmark(t, &NexmarkConfig{Events: n, EventRate: 1000, Seed: 3}, 300)
	if len(recs) != n {
		t.Fatalf("got %d events, want %d", len(recs), n)
	}
	evs := decodeNexmark(t, recs)
	want := map[string][]string{
		"person":  {"event_type", "id", "name", "email_address", "credit_card", "city", "state", "date_time", "extra"},
		"auction": {"event_type", "id", "item_name", "description", "initial_bid", "reserve", "date_time", "expires", "seller", "category", "extra"},
		"bid":     {"event_type", "auction", "bidder", "price", "channel", "url", "date_time", "extra"},
	}
	count := map[string]int{}
	for i, r := range recs {
		e := evs[i]
		count[e.EventType]++
		// Exactly 1 person, 3 auctions, 46 bids in every 50, in that order.
		kind := "bid"
		switch i % 50 {
		case 0:
			kind = "person"
		case 1, 2, 3:
			kind = "auction"
		}
		if e.EventType != kind {
			t.Fatalf("event %d is a %s, want a %s", i, e.EventType, kind)
		}
		// The structured view is the JSON object, field for field, typed.
		fs := r.Fields()
		var names []string
		for k := range fs.Len() {
			names = append(names, fs.Name(k))
		}
		if !slices.Equal(names, want[kind]) {
			t.Fatalf("event %d fields %v, want %v", i, names, want[kind])
		}
		var m map[string]any
		_ = json.Unmarshal(r.Value, &m)
		for k := range fs.Len() {
			got, jv := fs.Value(k), m[fs.Name(k)]
			if f, ok := jv.(float64); ok {
				if g, ok := got.(int64); !ok || float64(g) != f {
					t.Fatalf("event %d field %s: view %v (%T), JSON %v", i, fs.Name(k), got, got, jv)
				}
			} else if got != jv {
				t.Fatalf("event %d field %s: view %v, JSON %v", i, fs.Name(k), got, jv)
			}
		}
		if out := r.AppendJSON(nil); !bytes.Equal(out, r.Value) {
			t.Fatalf("event %d re-encodes as %s, want %s", i, out, r.Value)
		}
		if r.Origin.Name != "nexmark" || r.Origin.Offset != int64(i) || r.Source != 3 {
			t.Fatalf("event %d: origin %+v, source %d", i, r.Origin, r.Source)
		}
		switch kind {
		case "person":
			if e.Name == "" || !strings.HasSuffix(e.EmailAddress, ".com") || len(e.CreditCard) != 19 || e.City == "" || len(e.State) != 2 {
				t.Fatalf("event %d: person %+v", i, e)
			}
		case "auction":
			if e.InitialBid < 100 || e.Reserve <= e.InitialBid || e.Category < 10 || e.Category > 14 || e.Expires <= e.DateTime || e.ItemName == "" {
				t.Fatalf("event %d: auction %+v", i, e)
			}
		case "bid":
			if e.Price < 100 || e.Price > 100_000_000 || e.Channel == "" || !strings.HasPrefix(e.URL, "https://www.nexmark.com/") || len(e.Extra) < 54 || len(e.Extra) > 81 {
				t.Fatalf("event %d: bid %+v", i, e)
			}
		}
	}
	if count["person"] != 100 || count["auction"] != 300 || count["bid"] != 4600 {
		t.Fatalf("counts %v, want 100 persons, 300 auctions, 4600 bids", count)
	}
}

func TestNexmarkIDsReferToEarlierEvents(t *testing.T) {
	evs := decodeNexmark(t, readNexmark(t, &NexmarkConfig{Events: 20000, EventRate: 1000, Seed: 5}, 1024))
	people, auctions := map[int64]bool{}, map[int64]bool{}
	nextPerson, nextAuction := int64(NexmarkFirstPersonID), int64(NexmarkFirstAuctionID)
	for i, e := range evs {
		switch e.EventType {
		case "person":
			if e.ID != nextPerson {
				t.Fatalf("event %d: person id %d, want %d", i, e.ID, nextPerson)
			}
			people[e.ID] = true
			nextPerson++
		case "auction":
			if e.ID != nextAuction {
				t.Fatalf("event %d: auction id %d, want %d", i, e.ID, nextAuction)
			}
			if !people[e.Seller] {
				t.Fatalf("event %d: auction %d's seller %d was not generated before", i, e.ID, e.Seller)
			}
			auctions[e.ID] = true
			nextAuction++
		case "bid":
			if !auctions[e.Auction] || !people[e.Bidder] {
				t.Fatalf("event %d: bid for auction %d by %d, not both generated before", i, e.Auction, e.Bidder)
			}
		}
	}
}

func TestNexmarkDeterministicAndReplayable(t *testing.T) {
	c := &NexmarkConfig{Events: 3000, EventRate: 10_000_000, Seed: 11}
	a := readNexmark(t, c, 1024)
	b := readNexmark(t, &NexmarkConfig{Events: 3000, EventRate: 10_000_000, Seed: 11}, 7) // other batching
	other := readNexmark(t, &NexmarkConfig{Events: 3000, EventRate: 10_000_000, Seed: 12}, 1024)
	same := 0
	for i := range a {
		if !bytes.Equal(a[i].Value, b[i].Value) {
			t.Fatalf("event %d differs between two runs of one seed:\n%s\n%s", i, a[i].Value, b[i].Value)
		}
		if bytes.Equal(a[i].Value, other[i].Value) {
			same++
		}
	}
	if same > 30 {
		t.Fatalf("%d of 3000 events are the same for seeds 11 and 12", same)
	}
	// Replay: a source that saves its position and a new one seeking to it
	// continue with exactly the events that follow.
	src, err := c.NewSource(testBuild(t, 500))
	if err != nil {
		t.Fatal(err)
	}
	first := &pipeline.Batch{}
	if _, err := src.Read(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	pos, _ := src.(pipeline.Positioned).Position()
	if string(pos) != `{"next":500}` {
		t.Fatalf("position %s", pos)
	}
	again, err := c.NewSource(testBuild(t, 500))
	if err != nil {
		t.Fatal(err)
	}
	if err := again.(pipeline.Positioned).Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	rest := readToEOF(t, again, 500).recs
	if len(rest) != 2500 {
		t.Fatalf("after the seek: %d events, want 2500", len(rest))
	}
	for k, r := range rest {
		if !bytes.Equal(r.Value, a[500+k].Value) || r.Origin.Offset != int64(500+k) {
			t.Fatalf("replayed event %d differs:\n%s\n%s", 500+k, r.Value, a[500+k].Value)
		}
	}
	if err := again.(pipeline.Positioned).Seek(context.Background(), []byte(`{"next":3001}`)); err == nil {
		t.Fatal("a seek past the last event was accepted")
	}
}

func TestNexmarkEventTimeSpacing(t *testing.T) {
	base := time.Date(2025, 6, 1, 12, 0, 0, 250e6, time.UTC)
	for _, rate := range []int64{1000, 3, 10_000_000} {
		c := &NexmarkConfig{Events: 4000, EventRate: rate, BaseTime: "2025-06-01T14:00:00.250+02:00"}
		src, err := c.NewSource(testBuild(t, 1000))
		if err != nil {
			t.Fatal(err)
		}
		var recs []*pipeline.Record
		for {
			b := &pipeline.Batch{}
			if _, err := src.Read(context.Background(), b); err != nil {
				break
			}
			recs = append(recs, b.Records...)
			// The watermark is the last event's time.
			wm, ok := src.(pipeline.WatermarkSource).Watermark()
			if last := recs[len(recs)-1].Time; !ok || !wm.Equal(last) {
				t.Fatalf("rate %d: watermark %v, last event at %v", rate, wm, last)
			}
		}
		for i, r := range recs {
			want := base.Add(time.Duration(int64(i) * 1000 / rate * int64(time.Millisecond)))
			if !r.Time.Equal(want) || r.Get("date_time") != want.Format("2006-01-02T15:04:05.000Z") {
				t.Fatalf("rate %d event %d: Time %v, date_time %v, want %v", rate, i, r.Time, r.Get("date_time"), want)
			}
		}
	}
}

func TestNexmarkHotItems(t *testing.T) {
	const n = 50000
	evs := decodeNexmark(t, readNexmark(t, &NexmarkConfig{Events: n, EventRate: 1000, Seed: 9}, 1024))
	var bids, hotAuction, hotBidder, auctions, hotSeller int
	perAuction := map[int64]int{}
	for i, e := range evs {
		lastA, lastP := lastAuction(int64(i)), lastPerson(int64(i))
		switch e.EventType {
		case "bid":
			bids++
			perAuction[e.Auction]++
			if e.Auction == NexmarkFirstAuctionID+lastA/100*100 {
				hotAuction++
			}
			if (e.Bidder-NexmarkFirstPersonID)%100 == 1 && e.Bidder-NexmarkFirstPersonID >= lastP-100 {
				hotBidder++
			}
		case "auction":
			auctions++
			if e.Seller == NexmarkFirstPersonID+lastP/100*100 {
				hotSeller++
			}
		}
	}
	// 1 - 1/2 of bids for the hot auction, 1 - 1/4 by the hot bidder and
	// of auctions by the hot seller (plus the random picks that happen to
	// hit them).
	share := func(k, of int) float64 { return float64(k) / float64(of) }
	if s := share(hotAuction, bids); s < 0.48 || s > 0.56 {
		t.Errorf("hot auction share %.3f, want about 0.5", s)
	}
	if s := share(hotBidder, bids); s < 0.73 || s > 0.80 {
		t.Errorf("hot bidder share %.3f, want about 0.75", s)
	}
	if s := share(hotSeller, auctions); s < 0.70 || s > 0.82 {
		t.Errorf("hot seller share %.3f, want about 0.75", s)
	}
	// Skew: the busiest auction has far more bids than a typical one.
	counts := make([]int, 0, len(perAuction))
	for _, c := range perAuction {
		counts = append(counts, c)
	}
	slices.Sort(counts)
	if top, median := counts[len(counts)-1], counts[len(counts)/2]; top < 20*median {
		t.Errorf("busiest auction has %d bids, the median %d: no hot item", top, median)
	}
}

func TestNexmarkPriceIsLogUniform(t *testing.T) {
	rng := splitmix64(1)
	nexmarkTables.once.Do(nexmarkTables.build)
	var decades [6]int
	const n = 60000
	for range n {
		p := rng.price()
		if p < 100 || p > 100_000_000 {
			t.Fatalf("price %d out of range", p)
		}
		decades[min(int(math.Log10(float64(p)/100)), 5)]++
	}
	for d, c := range decades {
		if c < n/6*9/10 || c > n/6*11/10 {
			t.Fatalf("decade %d has %d prices, want about %d: %v", d, c, n/6, decades)
		}
	}
}

func TestNexmarkRefusesBadConfigAtTheKey(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`{events: -1}`, "p.yaml:6:19: nexmark: events: want 0"},
		{`{events: 9000000000000000000, event_rate: 1}`, "p.yaml:6:19: nexmark: events: 9000000000000000000 events at event_rate 1"},
		{`{event_rate: 0}`, "p.yaml:6:19: nexmark: event_rate: want events per second"},
		{`{events: 10, rate: -5}`, "p.yaml:6:31: nexmark: rate: want events per second"},
		{`{base_time: yesterday}`, "p.yaml:6:19: nexmark: base_time: want an RFC 3339 time"},
		{`{base_time: "2026-01-01T00:00:00.0001Z"}`, "finer than a millisecond"},
		{`{events: 100000, event_rate: 1, base_time: "9999-12-31T00:00:00Z"}`, "past the year 9999"},
		{`{evnets: 10}`, "unknown field"},
	} {
		_, err := pipeline.Default.Load("p.yaml", []byte(`
pipelines:
  - name: p
    guarantee: at_least_once
    sources:
      - nexmark: `+tc.src+`
    sinks: [{stdout: {}}]
`))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.src, err, tc.want)
		}
	}
	cfg, err := pipeline.Default.Load("p.yaml", []byte(`
pipelines:
  - name: p
    guarantee: at_least_once
    sources:
      - nexmark: { events: 1000, event_rate: 1, base_time: "2026-01-01T00:00:00Z", seed: 4, rate: 0 }
    sinks: [{stdout: {}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Pipelines[0].Sources[0].Config.(*NexmarkConfig); c.Events != 1000 || c.EventRate != 1 || c.Seed != 4 {
		t.Fatalf("decoded %+v", c)
	}
}

func TestNexmarkLimitKeepsTimesInRange(t *testing.T) {
	for _, rate := range []int64{1, 7, 1000, 10_000_000, nexmarkMaxEventRate} {
		base := time.Date(9990, 1, 1, 0, 0, 0, 0, time.UTC)
		n := nexmarkLimit(base.UnixMilli(), rate)
		g := NewNexmarkGenerator(0, base, rate)
		if n <= 0 {
			t.Fatalf("rate %d: limit %d", rate, n)
		}
		last := n - 1
		// The last event and the expiry of any auction near it stay in
		// the year 9999.
		if ms := g.EventTime(last + nexmarkAuctionHorizon); 2*ms-g.EventTime(last) > nexmarkMaxTime.UnixMilli() {
			t.Fatalf("rate %d: an auction at event %d may expire past the limit", rate, last)
		}
		ev, _ := g.AppendEvent(nil, (last/50-1)*50+1) // an auction
		var e nexmarkJSON
		if err := json.Unmarshal(ev, &e); err != nil {
			t.Fatalf("rate %d: last auction %s: %v", rate, ev, err)
		}
		if exp, err := time.Parse(time.RFC3339, e.Expires); err != nil || exp.After(nexmarkMaxTime) || e.Expires < e.DateTime {
			t.Fatalf("rate %d: last auction %s", rate, ev)
		}
	}
}

// BenchmarkNexmarkSource measures the source alone: events/s and
// allocations, batches of 1024 as the runtime asks for. Most of its CPU
// time is allocating and collecting the records and their field views
// (about 1.3 KB an event), which is why cpu-ns/event depends on GOGC.
//
//	go test -run XXX -bench NexmarkSource -benchmem ./sources/
func BenchmarkNexmarkSource(b *testing.B) {
	src, err := (&NexmarkConfig{EventRate: 10_000_000, Seed: 1}).NewSource(testBuild(b, 1024))
	if err != nil {
		b.Fatal(err)
	}
	var n int
	cpu0 := processCPU()
	for b.Loop() {
		batch := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch.Records)
	}
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event") // GC included
	}
}

// BenchmarkNexmarkGenerator measures the event generator alone: JSON bytes
// and field layout, no records.
//
//	go test -run XXX -bench NexmarkGenerator -benchmem ./sources/
func BenchmarkNexmarkGenerator(b *testing.B) {
	g := NewNexmarkGenerator(1, generateEpoch, 10_000_000)
	buf := make([]byte, 0, nexmarkMaxEvent)
	var i int64
	for b.Loop() {
		buf, _ = g.AppendEvent(buf[:0], i)
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
}

// TestNexmarkRate checks wall-clock pacing: never ahead of the schedule,
// and event times (event_rate) independent of it.
func TestNexmarkRate(t *testing.T) {
	const rate = 2000
	src, err := (&NexmarkConfig{Rate: rate, EventRate: 10}).NewSource(testBuild(t, 1024))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	start := time.Now()
	var recs []*pipeline.Record
	for time.Since(start) < 500*time.Millisecond {
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, b.Records...)
		if limit := rate*time.Since(start).Seconds() + 1; float64(len(recs)) > limit {
			t.Fatalf("%d events after %v: ahead of the %d/s schedule", len(recs), time.Since(start), rate)
		}
	}
	if want := rate * 0.5 * 0.5; float64(len(recs)) < want {
		t.Fatalf("only %d events in %v at %d/s", len(recs), time.Since(start), rate)
	}
	// 10 events per second of event time, whatever the wall clock did.
	if last := recs[len(recs)-1]; !last.Time.Equal(generateEpoch.Add(time.Duration(len(recs)-1) * 100 * time.Millisecond)) {
		t.Fatalf("event %d at %v", len(recs)-1, last.Time)
	}
}
