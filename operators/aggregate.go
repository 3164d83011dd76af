package operators

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/axiomhq/hyperloglog"
	"github.com/weirhq/weir/pipeline"
)

// Aggregate functions of the window operator. Every argument that varies
// per record is an expr-lang expression over the record's fields, compiled
// once at load; a record whose argument is null is skipped by that
// aggregate (it still counts for count()).
//
//	count()              records in the window (int)
//	count(x)             records where x is not null (int)
//	sum(x)               sum of numbers: an int while every value is an
//	                     integer and the sum fits, a float otherwise; null
//	                     when no value was seen
//	min(x), max(x)       smallest/largest number, string or time; values of
//	                     different types compare by type: numbers, then
//	                     strings, then times; null when no value
//	avg(x)               mean of numbers (float); null when no value
//	first(x), last(x)    value at the earliest/latest event time (ties: the
//	                     first/last to arrive)
//	count_distinct(x)    distinct values (int): exact up to 1000 distinct
//	                     values, then a HyperLogLog estimate (precision 14,
//	                     about 0.8% standard error)
//	quantile(x, q)       q-quantile (0 ≤ q ≤ 1, a number literal) of numbers,
//	                     from a DDSketch with 1% relative accuracy: the result
//	                     is within 1% of the value of rank ⌊q·(n−1)⌋ in the
//	                     sorted values (⌈q·(n−1)⌉ where that value is
//	                     negative); null when no value
//	arg_max(x, y)        x at the record with the largest y (ties: the first
//	arg_min(x, y)        to arrive); y is a number, string or time
//	collect(x, n)        list of the first n values to arrive (n a whole
//	                     number literal, at most 10000); when session
//	                     windows merge, the earlier session's values come
//	                     first
//
// Numbers must be finite: a NaN or infinite argument to sum, avg, min, max,
// quantile or arg_* sends the record to the dead-letter output (reason
// "aggregate"), as does a value of the wrong type (sum of a string).

// distinctExactLimit is the number of distinct values count_distinct keeps
// exactly before switching to HyperLogLog.
const distinctExactLimit = 1000

// distinctPrecision is the precision of count_distinct's HyperLogLog
// (hyperloglog.New14).
const distinctPrecision = 14

// quantileAccuracy is the relative accuracy of quantile().
const quantileAccuracy = 0.01

// collectLimit bounds collect(x, n).
const collectLimit = 10000

type aggKind uint8

const (
	aggCount aggKind = iota
	aggSum
	aggMin
	aggMax
	aggAvg
	aggFirst
	aggLast
	aggCountDistinct
	aggQuantile
	aggArgMax
	aggArgMin
	aggCollect
)

// aggFunc describes one aggregate function: its per-record arguments
// (minArgs..maxArgs) and whether a trailing constant parameter follows.
type aggFunc struct {
	kind             aggKind
	minArgs, maxArgs int  // per-record expression arguments
	param            bool // a constant last argument (quantile's q, collect's n)
	usage            string
}

var aggFuncs = map[string]aggFunc{
	"count":          {aggCount, 0, 1, false, "count() or count(x)"},
	"sum":            {aggSum, 1, 1, false, "sum(x)"},
	"min":            {aggMin, 1, 1, false, "min(x)"},
	"max":            {aggMax, 1, 1, false, "max(x)"},
	"avg":            {aggAvg, 1, 1, false, "avg(x)"},
	"first":          {aggFirst, 1, 1, false, "first(x)"},
	"last":           {aggLast, 1, 1, false, "last(x)"},
	"count_distinct": {aggCountDistinct, 1, 1, false, "count_distinct(x)"},
	"quantile":       {aggQuantile, 1, 1, true, "quantile(x, q)"},
	"arg_max":        {aggArgMax, 2, 2, false, "arg_max(x, y)"},
	"arg_min":        {aggArgMin, 2, 2, false, "arg_min(x, y)"},
	"collect":        {aggCollect, 1, 1, true, "collect(x, n)"},
}

// Aggregate is one compiled `name: func(args)` of a window's aggregate list.
type Aggregate struct {
	// Name is the output field.
	Name string
	// Func is the function name (count, sum, ...).
	Func string
	// Args are the per-record arguments, compiled at load.
	Args []*pipeline.Expr
	// Q is quantile's q; N is collect's n.
	Q float64
	N int
	// Pos is where the call is written.
	Pos pipeline.Pos

	kind    aggKind
	namePos pipeline.Pos // where the name is written

}

// ParseAggregate parses and compiles an aggregate call such as
// `quantile(latency_ms, 0.99)` whose result is output as field name; pos
// locates the call's first character for errors (the zero Pos when it does
// not come from a file). It is how Go code builds WindowConfig.Aggregates.
func ParseAggregate(name, call string, pos pipeline.Pos) (*Aggregate, error) {
	return parseAggregate(name, call, pos)
}

// parseAggregate parses and compiles `func(arg, ...)`. text is the call as
// written and pos the position of its first character.
func parseAggregate(name, text string, pos pipeline.Pos) (*Aggregate, error) {
	errAt := func(off int, format string, args ...any) error {
		return &pipeline.ConfigError{Pos: pos.Add(off), Msg: fmt.Sprintf("window: aggregate %q: ", name) + fmt.Sprintf(format, args...)}
	}
	open := strings.IndexByte(text, '(')
	closing := strings.LastIndexByte(text, ')')
	if open < 0 || closing < open || strings.TrimSpace(text[closing+1:]) != "" {
		return nil, errAt(0, "want a call such as count() or quantile(latency_ms, 0.99), got %q", text)
	}
	fname := strings.TrimSpace(text[:open])
	fn, ok := aggFuncs[fname]
	if !ok {
		return nil, errAt(leadingSpace(text), "unknown function %q (known: %s)", fname, strings.Join(slices.Sorted(mapsKeys(aggFuncs)), ", "))
	}
	a := &Aggregate{Name: name, Func: fname, Pos: pos.Add(leadingSpace(text)), kind: fn.kind}
	args, err := splitArgs(text[open+1:closing], open+1)
	if err != nil {
		return nil, errAt(err.off, "%s", err.msg)
	}
	want := fn.maxArgs
	if fn.param {
		want++
	}
	if len(args) < fn.minArgs || len(args) > want || (fn.param && len(args) != want) {
		return nil, errAt(open, "%s: want %s, got %d argument(s)", fname, fn.usage, len(args))
	}
	exprArgs := args
	if fn.param {
		p := args[len(args)-1]
		exprArgs = args[:len(args)-1]
		switch fn.kind {
		case aggQuantile:
			q, perr := strconv.ParseFloat(p.text, 64)
			if perr != nil || !(q >= 0 && q <= 1) {
				return nil, errAt(p.off, "quantile: q must be a number from 0 to 1, got %q", p.text)
			}
			a.Q = q
		case aggCollect:
			n, perr := strconv.Atoi(p.text)
			if perr != nil || n < 1 || n > collectLimit {
				return nil, errAt(p.off, "collect: n must be a whole number from 1 to %d, got %q", collectLimit, p.text)
			}
			a.N = n
		}
	}
	for _, arg := range exprArgs {
		e, cerr := pipeline.CompileExpr(arg.text, pos.Add(arg.off))
		if cerr != nil {
			return nil, prefixConfigErr(cerr, fmt.Sprintf("window: aggregate %q", name))
		}
		a.Args = append(a.Args, e)
	}
	return a, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func leadingSpace(s string) int { return len(s) - len(strings.TrimLeft(s, " \t")) }

type callArg struct {
	text string // trimmed
	off  int    // byte offset of text within the whole call
}

type callError struct {
	off int
	msg string
}

// splitArgs splits an argument list on top-level commas: commas inside
// brackets, braces, parentheses and string literals do not count. base is
// the offset of s within the call, for positions.
func splitArgs(s string, base int) ([]callArg, *callError) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var (
		out   []callArg
		depth []byte // expected closers
		quote byte
		start int
	)
	add := func(end int) *callError {
		raw := s[start:end]
		text := strings.TrimSpace(raw)
		off := base + start + leadingSpace(raw)
		if text == "" {
			return &callError{off, "empty argument"}
		}
		out = append(out, callArg{text: text, off: off})
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			switch {
			case c == '\\' && quote != '`':
				i++
			case c == quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'', '`':
			quote = c
		case '(':
			depth = append(depth, ')')
		case '[':
			depth = append(depth, ']')
		case '{':
			depth = append(depth, '}')
		case ')', ']', '}':
			if len(depth) == 0 || depth[len(depth)-1] != c {
				return nil, &callError{base + i, fmt.Sprintf("unbalanced %q", c)}
			}
			depth = depth[:len(depth)-1]
		case ',':
			if len(depth) == 0 {
				if err := add(i); err != nil {
					return nil, err
				}
				start = i + 1
			}
		}
	}
	if quote != 0 {
		return nil, &callError{base + len(s), "unterminated string"}
	}
	if len(depth) != 0 {
		return nil, &callError{base + len(s), fmt.Sprintf("missing %q", depth[len(depth)-1])}
	}
	if err := add(len(s)); err != nil {
		return nil, err
	}
	return out, nil
}

// stateful reports whether the aggregate keeps state of its own; count()
// reads the window's record count instead.
func (a *Aggregate) stateful() bool { return !(a.kind == aggCount && len(a.Args) == 0) }

// check validates one record's arguments before any window changes, so that
// a bad record changes nothing. skip means a null argument: the aggregate
// ignores the record.
func (a *Aggregate) check(x, y *value) (skip bool, err error) {
	if x.null() || (len(a.Args) == 2 && y.null()) {
		return true, nil
	}
	switch a.kind {
	case aggSum, aggAvg, aggQuantile:
		f, _, _, ok := x.number()
		if !ok {
			return false, fmt.Errorf("%s(%s): got %s, want a number", a.Func, a.Args[0].Source, typeName(x.any()))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false, fmt.Errorf("%s(%s): %v is not a finite number", a.Func, a.Args[0].Source, f)
		}
		if a.kind == aggQuantile && math.Abs(f) > quantileMapping.MaxIndexableValue() {
			return false, fmt.Errorf("quantile(%s): %g is too large to track", a.Args[0].Source, f)
		}
	case aggMin, aggMax:
		return false, checkOrdered(a, x, 0)
	case aggArgMax, aggArgMin:
		return false, checkOrdered(a, y, 1)
	}
	return false, nil
}

func checkOrdered(a *Aggregate, x *value, arg int) error {
	switch x.Kind {
	case pipeline.ScalarString, pipeline.ScalarInt:
		return nil
	case pipeline.ScalarFloat:
		if math.IsNaN(x.Float) {
			return fmt.Errorf("%s: %s is NaN", a.Func, a.Args[arg].Source)
		}
		return nil
	case pipeline.ScalarOther:
		if _, ok := x.v.(time.Time); ok {
			return nil
		}
	}
	return fmt.Errorf("%s: %s is %s, want a number, a string or a time", a.Func, a.Args[arg].Source, typeName(x.any()))
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case time.Time:
		return "a time"
	}
	return fmt.Sprintf("a %T", v)
}

// quantileMapping is the index mapping of every quantile sketch (read-only,
// shared): cubically interpolated, which keeps the 1% relative accuracy of
// the logarithmic mapping with a few more bins and without computing a
// logarithm per value.
var quantileMapping = func() mapping.IndexMapping {
	m, err := mapping.NewCubicallyInterpolatedMapping(quantileAccuracy)
	if err != nil {
		panic(err) // a constant argument
	}
	return m
}()

// accumulator is the state of one aggregate in one window. Arguments reach
// add only after Aggregate.check accepted them (and were not null).
type accumulator interface {
	// add folds in one record's arguments; t is its event time. x and y
	// are only valid during the call.
	add(x, y *value, t int64, sc *aggScratch)
	// merge folds in o, the state of a later window of the same key (a
	// session merge); o must not be used afterwards.
	merge(o accumulator, sc *aggScratch)
	// result returns the current value; it shares nothing mutable with the
	// state.
	result() any
	appendState(w *stateWriter)
	readState(r *stateReader)
}

// aggScratch is per-shard scratch space for accumulators.
type aggScratch struct {
	key  []byte
	x, y value
}

// values returns scratch values holding x and y (for merges, which work on
// results).
func (sc *aggScratch) values(x, y any) (*value, *value) {
	sc.x.set(x)
	sc.y.set(y)
	return &sc.x, &sc.y
}

func (a *Aggregate) newAccumulator() accumulator {
	switch a.kind {
	case aggCount:
		return &countAcc{}
	case aggSum:
		return &sumAcc{}
	case aggAvg:
		return &avgAcc{}
	case aggMin:
		return &extremeAcc{}
	case aggMax:
		return &extremeAcc{max: true}
	case aggFirst:
		return &firstLastAcc{}
	case aggLast:
		return &firstLastAcc{last: true}
	case aggCountDistinct:
		return &distinctAcc{}
	case aggQuantile:
		return &quantileAcc{q: a.Q}
	case aggArgMax:
		return &argAcc{max: true}
	case aggArgMin:
		return &argAcc{}
	case aggCollect:
		return &collectAcc{n: a.N}
	}
	panic("window: unknown aggregate kind") // unreachable: kinds come from aggFuncs
}

// countAcc is count(x).
type countAcc struct{ n int64 }

func (c *countAcc) add(_, _ *value, _ int64, _ *aggScratch) { c.n++ }
func (c *countAcc) merge(o accumulator, _ *aggScratch)      { c.n += o.(*countAcc).n }
func (c *countAcc) result() any                             { return c.n }
func (c *countAcc) appendState(w *stateWriter)              { w.varint(c.n) }
func (c *countAcc) readState(r *stateReader)                { c.n = r.varint() }

// sumAcc is sum(x): exact integer arithmetic until a float arrives or the
// sum overflows.
type sumAcc struct {
	i        int64
	f        float64
	has, flt bool
}

func (s *sumAcc) add(x, _ *value, _ int64, _ *aggScratch) {
	f, i, isInt, _ := x.number()
	s.addNumber(f, i, isInt)
}

func (s *sumAcc) addNumber(f float64, i int64, isInt bool) {
	s.has = true
	if !s.flt && isInt {
		if r := s.i + i; (r > s.i) == (i > 0) || i == 0 {
			s.i = r
			return
		}
	}
	if !s.flt {
		s.f, s.flt = float64(s.i), true
	}
	if isInt {
		f = float64(i)
	}
	s.f += f
}

func (s *sumAcc) merge(o accumulator, _ *aggScratch) {
	x := o.(*sumAcc)
	if !x.has {
		return
	}
	if x.flt {
		s.addNumber(x.f, 0, false)
	} else {
		s.addNumber(float64(x.i), x.i, true)
	}
}

func (s *sumAcc) result() any {
	switch {
	case !s.has:
		return nil
	case s.flt:
		return s.f
	}
	return s.i
}

func (s *sumAcc) appendState(w *stateWriter) {
	w.bool(s.has)
	w.bool(s.flt)
	w.varint(s.i)
	w.f64(s.f)
}

func (s *sumAcc) readState(r *stateReader) {
	s.has, s.flt, s.i, s.f = r.bool(), r.bool(), r.varint(), r.f64()
}

// avgAcc is avg(x).
type avgAcc struct {
	sum float64
	n   int64
}

func (a *avgAcc) add(x, _ *value, _ int64, _ *aggScratch) {
	f, _, _, _ := x.number()
	a.sum += f
	a.n++
}

func (a *avgAcc) merge(o accumulator, _ *aggScratch) {
	x := o.(*avgAcc)
	a.sum += x.sum
	a.n += x.n
}

func (a *avgAcc) result() any {
	if a.n == 0 {
		return nil
	}
	return a.sum / float64(a.n)
}

func (a *avgAcc) appendState(w *stateWriter) { w.f64(a.sum); w.varint(a.n) }
func (a *avgAcc) readState(r *stateReader)   { a.sum, a.n = r.f64(), r.varint() }

// ordKind ranks the types min/max compare: numbers, then strings, then
// times.
type ordKind uint8

const (
	ordNone ordKind = iota
	ordNumber
	ordString
	ordTime
)

// ordered holds a number, string or time that min/max/arg_* compare, with
// its own copy of string bytes (reused as the value changes).
type ordered struct {
	kind  ordKind
	isInt bool
	i     int64 // integer value, or a time in unix ns
	f     float64
	s     []byte
}

func orderedKind(x *value) ordKind {
	switch x.Kind {
	case pipeline.ScalarString:
		return ordString
	case pipeline.ScalarOther:
		return ordTime // check admits no other
	}
	return ordNumber
}

// cmp compares x with the held value: <0 when x is smaller. Nothing is held
// yet when o.kind is ordNone; callers check.
func (o *ordered) cmp(x *value) int {
	k := orderedKind(x)
	if k != o.kind {
		return int(k) - int(o.kind)
	}
	switch k {
	case ordString:
		return strings.Compare(x.Str, bytesView(o.s))
	case ordTime:
		return cmpInt64(x.v.(time.Time).UnixNano(), o.i)
	}
	f, i, isInt, _ := x.number()
	if isInt && o.isInt {
		return cmpInt64(i, o.i)
	}
	switch {
	case f < o.f:
		return -1
	case f > o.f:
		return 1
	}
	return 0
}

func (o *ordered) set(x *value) {
	o.kind = orderedKind(x)
	switch o.kind {
	case ordString:
		o.s = append(o.s[:0], x.Str...)
	case ordTime:
		o.i = x.v.(time.Time).UnixNano()
	default:
		o.f, o.i, o.isInt, _ = x.number()
	}
}

func (o *ordered) value() any {
	switch o.kind {
	case ordString:
		return string(o.s)
	case ordTime:
		return time.Unix(0, o.i).UTC()
	case ordNumber:
		if o.isInt {
			return o.i
		}
		return o.f
	}
	return nil
}

func (o *ordered) appendState(w *stateWriter) { w.value(o.value()) }

func (o *ordered) readState(r *stateReader) {
	v := r.value()
	o.kind = ordNone
	switch v.(type) {
	case nil:
	case string, time.Time, int64, float64:
		var x value
		x.set(v)
		o.set(&x)
	default:
		r.fail("bad ordered value")
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// bytesView returns a string sharing b's memory, for comparisons only.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// extremeAcc is min(x) or max(x).
type extremeAcc struct {
	max bool
	v   ordered
}

func (e *extremeAcc) add(x, _ *value, _ int64, _ *aggScratch) {
	if e.v.kind == ordNone {
		e.v.set(x)
		return
	}
	if c := e.v.cmp(x); (e.max && c > 0) || (!e.max && c < 0) {
		e.v.set(x)
	}
}

func (e *extremeAcc) merge(o accumulator, sc *aggScratch) {
	x := o.(*extremeAcc)
	if x.v.kind != ordNone {
		v, _ := sc.values(x.v.value(), nil)
		e.add(v, nil, 0, sc)
	}
}

func (e *extremeAcc) result() any                { return e.v.value() }
func (e *extremeAcc) appendState(w *stateWriter) { e.v.appendState(w) }
func (e *extremeAcc) readState(r *stateReader)   { e.v.readState(r) }

// owned is a retained value whose string bytes are reused as the value
// changes (last(x) replaces its value on almost every record).
type owned struct {
	isStr bool
	s     []byte
	v     any
}

func (o *owned) set(x *value) {
	if x.Kind == pipeline.ScalarString {
		o.isStr, o.s, o.v = true, append(o.s[:0], x.Str...), nil
		return
	}
	o.isStr, o.v = false, retain(x.any())
}

func (o *owned) value() any {
	if o.isStr {
		return string(o.s)
	}
	return o.v
}

// firstLastAcc is first(x) or last(x), by event time.
type firstLastAcc struct {
	last, has bool
	t         int64
	v         owned
}

func (f *firstLastAcc) add(x, _ *value, t int64, _ *aggScratch) {
	if !f.has || (f.last && t >= f.t) || (!f.last && t < f.t) {
		f.has, f.t = true, t
		f.v.set(x)
	}
}

func (f *firstLastAcc) merge(o accumulator, sc *aggScratch) {
	x := o.(*firstLastAcc)
	if x.has {
		v, _ := sc.values(x.v.value(), nil)
		f.add(v, nil, x.t, sc)
	}
}

func (f *firstLastAcc) result() any {
	if !f.has {
		return nil
	}
	return f.v.value()
}

func (f *firstLastAcc) appendState(w *stateWriter) {
	w.bool(f.has)
	w.varint(f.t)
	w.value(f.v.value())
}

func (f *firstLastAcc) readState(r *stateReader) {
	f.has, f.t = r.bool(), r.varint()
	var x value
	x.set(r.value())
	f.v.set(&x)
}

// distinctAcc is count_distinct(x): an exact set of encoded values up to
// distinctExactLimit, then a HyperLogLog sketch.
type distinctAcc struct {
	exact map[string]struct{}
	hll   *hyperloglog.Sketch
}

func (d *distinctAcc) add(x, _ *value, _ int64, sc *aggScratch) {
	sc.key = appendKeyValue(sc.key[:0], x)
	d.addKey(sc.key)
}

func (d *distinctAcc) addKey(k []byte) {
	if d.hll != nil {
		d.hll.Insert(k)
		return
	}
	if _, ok := d.exact[string(k)]; ok {
		return
	}
	if d.exact == nil {
		d.exact = make(map[string]struct{})
	}
	d.exact[string(k)] = struct{}{}
	if len(d.exact) > distinctExactLimit {
		d.hll = hyperloglog.New14()
		for _, k := range slices.Sorted(mapsKeys(d.exact)) {
			d.hll.Insert([]byte(k))
		}
		d.exact = nil
	}
}

func (d *distinctAcc) merge(o accumulator, _ *aggScratch) {
	x := o.(*distinctAcc)
	if x.hll != nil {
		if d.hll == nil {
			d.hll = hyperloglog.New14()
			for _, k := range slices.Sorted(mapsKeys(d.exact)) {
				d.hll.Insert([]byte(k))
			}
			d.exact = nil
		}
		_ = d.hll.Merge(x.hll) // same precision: cannot fail
		return
	}
	for _, k := range slices.Sorted(mapsKeys(x.exact)) {
		d.addKey([]byte(k))
	}
}

func (d *distinctAcc) result() any {
	if d.hll != nil {
		return int64(d.hll.Estimate())
	}
	return int64(len(d.exact))
}

func (d *distinctAcc) appendState(w *stateWriter) {
	if d.hll != nil {
		w.bool(true)
		b, _ := d.hll.MarshalBinary() // never fails
		w.bytes(b)
		return
	}
	w.bool(false)
	w.uvarint(uint64(len(d.exact)))
	for _, k := range slices.Sorted(mapsKeys(d.exact)) {
		w.str(k)
	}
}

func (d *distinctAcc) readState(r *stateReader) {
	if r.bool() {
		b := r.bytes()
		if r.err != nil {
			return
		}
		if len(b) < 2 || b[1] != distinctPrecision { // byte 1 of the encoding is the precision
			r.fail("count_distinct sketch: wrong precision")
			return
		}
		d.hll = hyperloglog.New14()
		if err := d.hll.UnmarshalBinary(b); err != nil {
			r.fail("count_distinct sketch: " + err.Error())
		}
		return
	}
	n := r.count()
	d.exact = make(map[string]struct{}, n)
	for range n {
		d.exact[r.str()] = struct{}{}
	}
}

// quantileDenseAfter is the number of values after which a quantile
// sketch moves from paginated stores (small for windows with few values)
// to dense ones (constant-time adds, a few KB).
const quantileDenseAfter = 256

// quantileAcc is quantile(x, q): a DDSketch.
type quantileAcc struct {
	q     float64
	n     int64 // values added
	sk    *ddsketch.DDSketch
	dense bool // sk has dense stores
}

func (a *quantileAcc) add(x, _ *value, _ int64, _ *aggScratch) {
	if a.sk == nil {
		a.sk = ddsketch.NewDDSketchFromStoreProvider(quantileMapping, store.BufferedPaginatedStoreConstructor)
	}
	f, _, _, _ := x.number()
	_ = a.sk.Add(f) // check rejected what Add refuses (NaN, ±Inf, too large)
	a.n++
	if !a.dense && a.n >= quantileDenseAfter {
		a.toDense()
	}
}

func (a *quantileAcc) toDense() {
	d := ddsketch.NewDDSketch(quantileMapping, store.NewDenseStore(), store.NewDenseStore())
	_ = d.MergeWith(a.sk) // same mapping: cannot fail
	a.sk, a.dense = d, true
}

func (a *quantileAcc) merge(o accumulator, _ *aggScratch) {
	x := o.(*quantileAcc)
	if x.sk == nil {
		return
	}
	if a.sk == nil {
		a.sk, a.n, a.dense = x.sk, x.n, x.dense
		return
	}
	if x.dense && !a.dense {
		a.sk, x.sk = x.sk, a.sk
		a.dense = true
	}
	_ = a.sk.MergeWith(x.sk) // same mapping: cannot fail
	a.n += x.n
	if !a.dense && a.n >= quantileDenseAfter {
		a.toDense()
	}
}

func (a *quantileAcc) result() any {
	if a.sk == nil || a.sk.IsEmpty() {
		return nil
	}
	v, err := a.sk.GetValueAtQuantile(a.q)
	if err != nil {
		return nil
	}
	return v
}

func (a *quantileAcc) appendState(w *stateWriter) {
	w.varint(a.n)
	if a.sk == nil {
		w.bytes(nil)
		return
	}
	w.bool(a.dense)
	var b []byte
	a.sk.Encode(&b, true)
	w.bytes(b)
}

func (a *quantileAcc) readState(r *stateReader) {
	a.n = r.varint()
	if a.n == 0 {
		r.bytes()
		return
	}
	a.dense = r.bool()
	b := r.bytes()
	if r.err != nil {
		return
	}
	provider := store.BufferedPaginatedStoreConstructor
	if a.dense {
		provider = store.DenseStoreConstructor
	}
	sk, err := decodeSketch(b, provider)
	if err != nil {
		r.fail("quantile sketch: " + err.Error())
		return
	}
	a.sk = sk
}

// decodeSketch decodes a sketch from a snapshot. Dense and paginated
// stores allocate for the whole range of bin indexes they are given, so the
// bins are first read into a sparse store and checked: indexes in the
// mapping's range, counts finite and not negative. Corrupt state is an
// error, never a huge allocation.
func decodeSketch(b []byte, provider store.Provider) (*ddsketch.DDSketch, error) {
	sparse, err := ddsketch.DecodeDDSketch(b, store.SparseStoreConstructor, quantileMapping)
	if err != nil {
		return nil, err
	}
	lo := quantileMapping.Index(quantileMapping.MinIndexableValue())
	hi := quantileMapping.Index(quantileMapping.MaxIndexableValue())
	bad := false
	for _, st := range []store.Store{sparse.GetPositiveValueStore(), sparse.GetNegativeValueStore()} {
		st.ForEach(func(index int, count float64) bool {
			bad = index < lo || index > hi || count < 0 || math.IsNaN(count) || math.IsInf(count, 0)
			return bad
		})
	}
	if z := sparse.GetZeroCount(); bad || z < 0 || math.IsNaN(z) || math.IsInf(z, 0) {
		return nil, errors.New("bins out of range")
	}
	return ddsketch.DecodeDDSketch(b, provider, quantileMapping)
}

// argAcc is arg_max(x, y) or arg_min(x, y).
type argAcc struct {
	max bool
	key ordered
	val owned
}

func (a *argAcc) add(x, y *value, _ int64, _ *aggScratch) {
	if a.key.kind != ordNone {
		if c := a.key.cmp(y); !((a.max && c > 0) || (!a.max && c < 0)) {
			return
		}
	}
	a.key.set(y)
	a.val.set(x)
}

func (a *argAcc) merge(o accumulator, sc *aggScratch) {
	x := o.(*argAcc)
	if x.key.kind != ordNone {
		v, k := sc.values(x.val.value(), x.key.value())
		a.add(v, k, 0, sc)
	}
}

func (a *argAcc) result() any {
	if a.key.kind == ordNone {
		return nil
	}
	return a.val.value()
}

func (a *argAcc) appendState(w *stateWriter) {
	a.key.appendState(w)
	w.value(a.val.value())
}

func (a *argAcc) readState(r *stateReader) {
	a.key.readState(r)
	var x value
	x.set(r.value())
	a.val.set(&x)
}

// collectAcc is collect(x, n).
type collectAcc struct {
	n    int
	vals []any
}

func (c *collectAcc) add(x, _ *value, _ int64, _ *aggScratch) {
	if len(c.vals) < c.n {
		c.vals = append(c.vals, retain(x.any()))
	}
}

func (c *collectAcc) merge(o accumulator, _ *aggScratch) {
	x := o.(*collectAcc)
	for _, v := range x.vals {
		if len(c.vals) >= c.n {
			break
		}
		c.vals = append(c.vals, v)
	}
}

func (c *collectAcc) result() any { return append([]any{}, c.vals...) }

func (c *collectAcc) appendState(w *stateWriter) {
	w.uvarint(uint64(len(c.vals)))
	for _, v := range c.vals {
		w.value(v)
	}
}

func (c *collectAcc) readState(r *stateReader) {
	n := r.count()
	if n > c.n {
		r.fail("collect holds more values than its limit")
		return
	}
	c.vals = make([]any, n)
	for i := range c.vals {
		c.vals[i] = r.value()
	}
}
