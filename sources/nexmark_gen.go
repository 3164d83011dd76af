package sources

import (
	"math"
	"math/bits"
	"strconv"
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// The Nexmark model, as the Nexmark specification and its Beam and Flink
// generators describe it: an online auction where people register, put
// items up for auction and bid on them. Event i (from 0) is a person when
// i mod 50 is 0, an auction when it is 1 to 3 and a bid otherwise, so every
// 50 events hold 1 person, 3 auctions and 46 bids.
const (
	nexmarkPersonShare  = 1
	nexmarkAuctionShare = 3
	nexmarkCycle        = 50 // person + auction + bid shares (46 bids)

	// NexmarkFirstPersonID and NexmarkFirstAuctionID are the ids of the
	// first person and the first auction; the ids that follow are
	// consecutive.
	NexmarkFirstPersonID  = 1000
	NexmarkFirstAuctionID = 1000
	nexmarkFirstCategory  = 10
	nexmarkCategories     = 5

	// Hot items. A bid is for a hot auction with probability 1 - 1/2 and by
	// a hot bidder with probability 1 - 1/4; an auction is by a hot seller
	// with probability 1 - 1/4. The hot auction is the first of the latest
	// block of nexmarkHotBlock auction ids, the hot seller the first and
	// the hot bidder the second of the latest block of person ids (so that
	// hot sellers and hot bidders differ).
	nexmarkHotAuctionRatio = 2
	nexmarkHotBidderRatio  = 4
	nexmarkHotSellerRatio  = 4
	nexmarkHotBlock        = 100
	// Other bids are for one of the latest nexmarkInFlight auctions, by one
	// of the latest nexmarkActivePeople people; other auctions are by one
	// of those people.
	nexmarkInFlight     = 100
	nexmarkActivePeople = 1000

	// Bids come through one of nexmarkChannels channels, or, half of the
	// time, one of four hot ones.
	nexmarkChannels        = 10000
	nexmarkHotChannelRatio = 2

	// The average sizes the extra field pads events to, in the spec's
	// idealized byte counts.
	nexmarkPersonSize  = 200
	nexmarkAuctionSize = 500
	nexmarkBidSize     = 100

	// nexmarkMaxEvent bounds the JSON length of one event, for sizing.
	nexmarkMaxEvent = 1024
	// nexmarkAuctionHorizon is how many events it takes to create
	// nexmarkInFlight auctions: auctions last twice that long on average.
	nexmarkAuctionHorizon = nexmarkInFlight * nexmarkCycle / nexmarkAuctionShare
)

// nexmarkMaxTime is the last event time the generator can write in RFC
// 3339 (and the limit on an auction's expiry).
var nexmarkMaxTime = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)

// NexmarkGenerator generates Nexmark events. Event i is a pure function of
// (seed, base time, event rate, i), so any event can be made on its own, in
// any order, and the stream is replayable from any index.
//
// Ids refer only to people and auctions generated before: a bid at index
// i names an auction and a bidder whose events have lower indexes, and an
// auction's seller is an earlier person. (The Beam and Flink generators
// also let ids run up to 10 ahead of the last one generated; this one does
// not.)
//
// A NexmarkGenerator is not safe for concurrent use: AppendEvent keeps the
// field layout of the last event in the generator.
type NexmarkGenerator struct {
	key    uint64 // mixed seed
	baseMs int64  // event time of event 0, Unix ms
	rate   int64  // events per second of event time

	spans  [12]nexmarkSpan // the fields of the last event appended
	nspans int

	// The last date_time text written, reused while events share a
	// millisecond (10,000 of them do at 10 M events/s).
	lastMs   int64
	lastText []byte
}

// nexmarkSpan is one field of an appended event: its name and where its
// encoded value lies, relative to the start of the event.
type nexmarkSpan struct {
	name       string
	start, end int
	str        bool
}

// NewNexmarkGenerator returns a generator for seed whose event 0 happens at
// base (truncated to the millisecond) and whose events are eventRate per
// second of event time apart (event i at base + ⌊i·1000/eventRate⌋ ms).
// eventRate must be at least 1.
func NewNexmarkGenerator(seed int64, base time.Time, eventRate int64) *NexmarkGenerator {
	nexmarkTables.once.Do(nexmarkTables.build)
	mix := splitmix64(uint64(seed))
	return &NexmarkGenerator{key: mix.next(), baseMs: base.UnixMilli(), rate: max(eventRate, 1), lastMs: math.MinInt64}
}

// EventTime returns the event time of event i, in Unix milliseconds.
func (g *NexmarkGenerator) EventTime(i int64) int64 {
	return g.baseMs + i/g.rate*1000 + i%g.rate*1000/g.rate
}

// nexmarkLimit returns how many events a generator starting at baseMs with
// rate events/s can make before an event time, or an auction's expiry,
// would pass nexmarkMaxTime.
func nexmarkLimit(baseMs, rate int64) int64 {
	span := nexmarkMaxTime.UnixMilli() - baseMs
	if span < 0 {
		return 0
	}
	// Events i < (span+1)·rate/1000 have times ≤ base + span.
	hi, lo := bits.Mul64(uint64(span)+1, uint64(rate))
	n := int64(math.MaxInt64)
	if hi < 1000 {
		if q, _ := bits.Div64(hi, lo, 1000); q < math.MaxInt64 {
			n = int64(q)
		}
	}
	// An auction expires up to twice its horizon after it is made, plus
	// 1 ms of rounding at each end.
	margin := int64(2*nexmarkAuctionHorizon + 2)
	margin += 2 * rate / 1000 // 2 ms worth of events
	if n <= margin {
		return 0
	}
	return n - margin
}

// NexmarkKind returns the event type of event i: "person", "auction" or "bid".
func NexmarkKind(i int64) string {
	switch r := i % nexmarkCycle; {
	case r < nexmarkPersonShare:
		return "person"
	case r < nexmarkPersonShare+nexmarkAuctionShare:
		return "auction"
	}
	return "bid"
}

// lastPerson returns the base-0 id of the latest person at event i: the one
// event i makes when it is a person, else the latest one before it.
func lastPerson(i int64) int64 { return i / nexmarkCycle }

// lastAuction returns the base-0 id of the latest auction at event i (-1
// before the first).
func lastAuction(i int64) int64 {
	cycle, off := i/nexmarkCycle, i%nexmarkCycle
	switch {
	case off < nexmarkPersonShare:
		return cycle*nexmarkAuctionShare - 1
	case off < nexmarkPersonShare+nexmarkAuctionShare:
		return cycle*nexmarkAuctionShare + off - nexmarkPersonShare
	}
	return cycle*nexmarkAuctionShare + nexmarkAuctionShare - 1
}

// below returns a uniform integer in [0, n), n > 0.
func (x *splitmix64) below(n uint64) uint64 {
	hi, _ := bits.Mul64(x.next(), n)
	return hi
}

// randomPerson returns one of the active people at or before last.
func (x *splitmix64) randomPerson(last int64) int64 {
	active := min(last+1, nexmarkActivePeople)
	return last + 1 - active + int64(x.below(uint64(active)))
}

// price returns a price in cents, log-uniform from 1 to 10⁶ dollars:
// round(100 · 10^(6u)) for a uniform u in [0, 1), with 10^(6u)
// interpolated linearly in a table (relative error below 10⁻⁸, and much
// faster than math.Exp).
func (x *splitmix64) price() int64 {
	r := x.next()
	j := r >> (64 - nexmarkPriceBits)                                                    // table cell
	f := float64(r<<nexmarkPriceBits>>11) / (1 << 53)                                    // position within it
	p := nexmarkTables.prices[j] + f*(nexmarkTables.prices[j+1]-nexmarkTables.prices[j]) // 100 · 10^(6u)
	return int64(p + 0.5)
}

// nexmarkPriceBits is the log2 of the number of cells of the price table.
const nexmarkPriceBits = 14

// AppendEvent appends event i to dst as one JSON object (no newline) and
// returns the extended slice and the event's time in Unix milliseconds,
// which is also its date_time. Fields, in order:
//
//	person:  event_type, id, name, email_address, credit_card, city, state, date_time, extra
//	auction: event_type, id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, extra
//	bid:     event_type, auction, bidder, price, channel, url, date_time, extra
//
// Times are RFC 3339 UTC with milliseconds; ids, prices and categories are
// integers. No string needs escaping.
func (g *NexmarkGenerator) AppendEvent(dst []byte, i int64) ([]byte, int64) {
	rng := splitmix64(g.key ^ uint64(i)*0xd6e8feb86659fd93)
	rng.next()
	ms := g.EventTime(i)
	o := len(dst)
	g.nspans = 0
	dst = append(dst, `{"event_type":"`...)
	kind := NexmarkKind(i)
	dst = g.str(dst, o, "event_type", kind)
	switch kind {
	case "person":
		dst = g.person(dst, o, i, ms, &rng)
	case "auction":
		dst = g.auction(dst, o, i, ms, &rng)
	default:
		dst = g.bid(dst, o, i, ms, &rng)
	}
	return append(dst, '}'), ms
}

// fields writes the field layout of the event last appended by AppendEvent
// into fs, each value aliasing event (the bytes that call appended).
func (g *NexmarkGenerator) fields(fs *pipeline.Fields, event []byte) {
	for _, s := range g.spans[:g.nspans] {
		fs.AppendEncoded(s.name, event[s.start:s.end:s.end], s.str)
	}
}

// str finishes a string value whose opening quote and content precede;
// the content is text. o is the start of the event.
func (g *NexmarkGenerator) str(dst []byte, o int, name, text string) []byte {
	start := len(dst)
	dst = append(dst, text...)
	g.spans[g.nspans] = nexmarkSpan{name: name, start: start - o, end: len(dst) - o, str: true}
	g.nspans++
	return append(dst, '"')
}

// nexmarkKey writes `,"name":` and, for a string, its opening quote.
func nexmarkKey(dst []byte, name string, str bool) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	if str {
		return append(dst, '"', ':', '"')
	}
	return append(dst, '"', ':')
}

func (g *NexmarkGenerator) int(dst []byte, o int, name string, v int64) []byte {
	dst = nexmarkKey(dst, name, false)
	start := len(dst)
	dst = strconv.AppendInt(dst, v, 10)
	g.spans[g.nspans] = nexmarkSpan{name: name, start: start - o, end: len(dst) - o}
	g.nspans++
	return dst
}

func (g *NexmarkGenerator) text(dst []byte, o int, name, v string) []byte {
	return g.str(nexmarkKey(dst, name, true), o, name, v)
}

// begin opens a string field whose content the caller appends; end closes it.
func (g *NexmarkGenerator) begin(dst []byte, name string) ([]byte, int) {
	dst = nexmarkKey(dst, name, true)
	return dst, len(dst)
}

func (g *NexmarkGenerator) end(dst []byte, o int, name string, start int) []byte {
	g.spans[g.nspans] = nexmarkSpan{name: name, start: start - o, end: len(dst) - o, str: true}
	g.nspans++
	return append(dst, '"')
}

func (g *NexmarkGenerator) time(dst []byte, o int, name string, ms int64) []byte {
	dst, start := g.begin(dst, name)
	if name == "date_time" {
		if ms != g.lastMs {
			g.lastMs = ms
			g.lastText = time.UnixMilli(ms).UTC().AppendFormat(g.lastText[:0], pipeline.TimeLayout)
		}
		dst = append(dst, g.lastText...)
	} else {
		dst = time.UnixMilli(ms).UTC().AppendFormat(dst, pipeline.TimeLayout)
	}
	return g.end(dst, o, name, start)
}

// extra pads an event of size bytes (the spec's idealized count) towards
// avg with letters: on average avg - size of them, ±20 %.
func (g *NexmarkGenerator) extra(dst []byte, o int, size, avg int, rng *splitmix64) []byte {
	dst, start := g.begin(dst, "extra")
	if size < avg {
		want := avg - size
		delta := int(math.Round(float64(want) * 0.2))
		n := want - delta
		if delta > 0 {
			n += int(rng.below(uint64(2 * delta)))
		}
		off := int(rng.below(uint64(len(nexmarkTables.letters) - n)))
		dst = append(dst, nexmarkTables.letters[off:off+n]...)
	}
	return g.end(dst, o, "extra", start)
}

func (g *NexmarkGenerator) person(dst []byte, o int, i, ms int64, rng *splitmix64) []byte {
	t := &nexmarkTables
	dst = g.int(dst, o, "id", NexmarkFirstPersonID+lastPerson(i))
	dst, start := g.begin(dst, "name")
	dst = append(dst, t.firstNames[rng.below(uint64(len(t.firstNames)))]...)
	dst = append(dst, ' ')
	dst = append(dst, t.lastNames[rng.below(uint64(len(t.lastNames)))]...)
	dst = g.end(dst, o, "name", start)
	size := 8 + len(dst) - start
	dst, start = g.begin(dst, "email_address")
	dst = appendLetters(dst, 3+int(rng.below(4)), rng)
	dst = append(dst, '@')
	dst = appendLetters(dst, 3+int(rng.below(2)), rng)
	dst = append(dst, ".com"...)
	dst = g.end(dst, o, "email_address", start)
	size += len(dst) - start
	dst, start = g.begin(dst, "credit_card")
	for k := range 4 {
		if k > 0 {
			dst = append(dst, ' ')
		}
		n := rng.below(10000)
		dst = append(dst, byte('0'+n/1000), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
	}
	dst = g.end(dst, o, "credit_card", start)
	size += len(dst) - start
	city := t.cities[rng.below(uint64(len(t.cities)))]
	state := t.states[rng.below(uint64(len(t.states)))]
	dst = g.text(dst, o, "city", city)
	dst = g.text(dst, o, "state", state)
	size += len(city) + len(state)
	dst = g.time(dst, o, "date_time", ms)
	return g.extra(dst, o, size, nexmarkPersonSize, rng)
}

func (g *NexmarkGenerator) auction(dst []byte, o int, i, ms int64, rng *splitmix64) []byte {
	dst = g.int(dst, o, "id", NexmarkFirstAuctionID+lastAuction(i))
	dst, start := g.begin(dst, "item_name")
	dst = appendWords(dst, 20, rng)
	dst = g.end(dst, o, "item_name", start)
	size := 8 + len(dst) - start + 40
	dst, start = g.begin(dst, "description")
	dst = appendWords(dst, 100, rng)
	dst = g.end(dst, o, "description", start)
	size += len(dst) - start
	initial := rng.price()
	dst = g.int(dst, o, "initial_bid", initial)
	dst = g.int(dst, o, "reserve", initial+rng.price())
	dst = g.time(dst, o, "date_time", ms)
	// An auction lasts, on average, as long as it takes to create
	// nexmarkInFlight more auctions.
	horizon := g.EventTime(i+nexmarkAuctionHorizon) - ms
	dst = g.time(dst, o, "expires", ms+1+int64(rng.below(uint64(max(2*horizon, 1)))))
	last := lastPerson(i)
	seller := last / nexmarkHotBlock * nexmarkHotBlock
	if rng.below(nexmarkHotSellerRatio) == 0 {
		seller = rng.randomPerson(last)
	}
	dst = g.int(dst, o, "seller", NexmarkFirstPersonID+seller)
	dst = g.int(dst, o, "category", nexmarkFirstCategory+int64(rng.below(nexmarkCategories)))
	return g.extra(dst, o, size, nexmarkAuctionSize, rng)
}

func (g *NexmarkGenerator) bid(dst []byte, o int, i, ms int64, rng *splitmix64) []byte {
	t := &nexmarkTables
	lastA := lastAuction(i)
	auction := lastA / nexmarkHotBlock * nexmarkHotBlock
	if rng.below(nexmarkHotAuctionRatio) == 0 {
		lo := max(lastA-nexmarkInFlight, 0)
		auction = lo + int64(rng.below(uint64(lastA-lo+1)))
	}
	lastP := lastPerson(i)
	bidder := lastP/nexmarkHotBlock*nexmarkHotBlock + 1
	if bidder > lastP { // the block's second person is yet to come
		bidder = max(bidder-nexmarkHotBlock, 0)
	}
	if rng.below(nexmarkHotBidderRatio) == 0 {
		bidder = rng.randomPerson(lastP)
	}
	dst = g.int(dst, o, "auction", NexmarkFirstAuctionID+auction)
	dst = g.int(dst, o, "bidder", NexmarkFirstPersonID+bidder)
	dst = g.int(dst, o, "price", rng.price())
	var ch int
	if rng.below(nexmarkHotChannelRatio) == 0 {
		ch = len(t.hotChannels) + int(rng.below(nexmarkChannels))
	} else {
		ch = int(rng.below(uint64(len(t.hotChannels))))
	}
	dst = g.text(dst, o, "channel", t.channels[ch])
	dst = g.text(dst, o, "url", t.urls[ch])
	dst = g.time(dst, o, "date_time", ms)
	return g.extra(dst, o, 32, nexmarkBidSize, rng)
}

// appendLetters appends n random lower-case letters.
func appendLetters(dst []byte, n int, rng *splitmix64) []byte {
	for n > 0 {
		// 13 letters from one draw: 26^13 < 2^64.
		x := rng.next()
		for k := 0; k < 13 && n > 0; k++ {
			var c uint64
			c, x = bits.Mul64(x, 26)
			dst = append(dst, byte('a'+c))
			n--
		}
	}
	return dst
}

// appendWords appends 3 to max-1 random characters, each a space with
// probability 1/13 and a lower-case letter otherwise, with spaces at
// either end trimmed (the spec's random string).
func appendWords(dst []byte, max int, rng *splitmix64) []byte {
	n := 3 + int(rng.below(uint64(max-3)))
	start := len(dst)
	for range n {
		c := rng.below(26 * 13)
		if c%13 == 0 {
			if len(dst) > start { // no leading space
				dst = append(dst, ' ')
			}
			continue
		}
		dst = append(dst, byte('a'+c/13))
	}
	for len(dst) > start && dst[len(dst)-1] == ' ' {
		dst = dst[:len(dst)-1]
	}
	return dst
}

// nexmarkTables are the generator's fixed vocabularies, built once. They do
// not depend on the seed: every run draws from the same channels and URLs.
var nexmarkTables nexmarkVocab

type nexmarkVocab struct {
	once                  sync.Once
	firstNames, lastNames []string
	cities, states        []string
	hotChannels           []string
	channels, urls        []string  // the hot channels first, then channel-0 to channel-9999
	letters               string    // random letters that extra fields are cut from
	prices                []float64 // 100 · 10^(6j/2^nexmarkPriceBits), j from 0 to 2^nexmarkPriceBits
}

// nexmarkLetters is the length of the letter pool extra fields are cut
// from; it is longer than any extra.
const nexmarkLetters = 1 << 16

func (t *nexmarkVocab) build() {
	t.firstNames = []string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	t.lastNames = []string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	t.cities = []string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	t.states = []string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	t.hotChannels = []string{"Google", "Facebook", "Baidu", "Apple"}
	rng := splitmix64(0x6e65786d61726b) // "nexmark"
	url := func() string {
		b := []byte("https://www.nexmark.com/")
		for range 3 {
			b = appendLetters(b, 3+int(rng.below(2)), &rng)
			b = append(b, '/')
		}
		return string(append(b, "item.htm?query=1"...))
	}
	for _, c := range t.hotChannels {
		t.channels = append(t.channels, c)
		t.urls = append(t.urls, url())
	}
	for n := range nexmarkChannels {
		t.channels = append(t.channels, "channel-"+strconv.Itoa(n))
		u := url()
		if rng.below(10) > 0 {
			id := int64(int32(bits.Reverse32(uint32(n))))
			u += "&channel_id=" + strconv.FormatInt(max(id, -id), 10)
		}
		t.urls = append(t.urls, u)
	}
	t.prices = make([]float64, 1<<nexmarkPriceBits+1)
	for j := range t.prices {
		t.prices[j] = 100 * math.Pow(10, 6*float64(j)/(1<<nexmarkPriceBits))
	}
	t.letters = string(appendLetters(make([]byte, 0, nexmarkLetters), nexmarkLetters, &rng))
}
