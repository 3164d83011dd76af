package operators

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"slices"
	"time"
)

// Window and dedupe state is snapshotted in a small binary format:
//
//	magic    4 bytes  "WWIN" (window) or "WDDP" (dedupe)
//	version  uvarint  (2; 1 is read too: its watermarks have no splits)
//	body     operator-specific, built from the primitives below
//	crc      4 bytes  CRC-32C (Castagnoli) of everything before it, little endian
//
// Primitives: uvarint and zig-zag varint (encoding/binary), float64 as 8
// bytes little endian, bool as one byte, byte strings as uvarint length then
// bytes, and field values as a tag byte then the value (see appendValue).
// Maps are written in sorted key order and windows in firing order, so the
// same state always gives the same bytes.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const stateVersion = 2

// stateWriter builds a snapshot.
type stateWriter struct{ b []byte }

func newStateWriter(magic string) *stateWriter {
	w := &stateWriter{b: make([]byte, 0, 256)}
	w.b = append(w.b, magic...)
	w.uvarint(stateVersion)
	return w
}

func (w *stateWriter) finish() []byte {
	return binary.LittleEndian.AppendUint32(w.b, crc32.Checksum(w.b, castagnoli))
}

func (w *stateWriter) uvarint(u uint64) { w.b = binary.AppendUvarint(w.b, u) }
func (w *stateWriter) varint(i int64)   { w.b = binary.AppendVarint(w.b, i) }
func (w *stateWriter) f64(f float64) {
	w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(f))
}
func (w *stateWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}
func (w *stateWriter) bytes(p []byte) { w.uvarint(uint64(len(p))); w.b = append(w.b, p...) }
func (w *stateWriter) str(s string)   { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }

// Value tags.
const (
	valNull = iota
	valFalse
	valTrue
	valInt
	valFloat
	valString
	valTime
	valBytes
	valList
	valMap
)

// value writes a retained field value (see retain for the types).
func (w *stateWriter) value(v any) {
	switch x := v.(type) {
	case nil:
		w.b = append(w.b, valNull)
	case bool:
		if x {
			w.b = append(w.b, valTrue)
		} else {
			w.b = append(w.b, valFalse)
		}
	case int64:
		w.b = append(w.b, valInt)
		w.varint(x)
	case float64:
		w.b = append(w.b, valFloat)
		w.f64(x)
	case string:
		w.b = append(w.b, valString)
		w.str(x)
	case time.Time:
		w.b = append(w.b, valTime)
		w.varint(x.Unix())
		w.uvarint(uint64(x.Nanosecond()))
	case []byte:
		w.b = append(w.b, valBytes)
		w.bytes(x)
	case []any:
		w.b = append(w.b, valList)
		w.uvarint(uint64(len(x)))
		for _, e := range x {
			w.value(e)
		}
	case map[string]any:
		w.b = append(w.b, valMap)
		w.uvarint(uint64(len(x)))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			w.str(k)
			w.value(x[k])
		}
	default:
		w.value(retain(v))
	}
}

// stateReader reads a snapshot. The first problem sticks in err; later reads
// return zero values, so decoders check err once at the end. Corrupt input
// never panics and never makes the reader allocate more than the input size.
type stateReader struct {
	b       []byte
	err     error
	version uint64 // of the state being read
}

// errCorruptState is wrapped by every decoding error.
var errCorruptState = errors.New("corrupt state")

func newStateReader(state []byte, magic string) (*stateReader, error) {
	if len(state) < len(magic)+5 {
		return nil, fmt.Errorf("%w: %d bytes is too short", errCorruptState, len(state))
	}
	body, sum := state[:len(state)-4], binary.LittleEndian.Uint32(state[len(state)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorruptState)
	}
	if string(body[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: not %s state (magic %q)", errCorruptState, magic, body[:len(magic)])
	}
	r := &stateReader{b: body[len(magic):]}
	if v := r.uvarint(); r.err == nil && (v < 1 || v > stateVersion) {
		return nil, fmt.Errorf("state version %d is not supported (want 1 to %d)", v, stateVersion)
	} else {
		r.version = v
	}
	return r, r.err
}

func (r *stateReader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errCorruptState, msg)
	}
}

// done reports an error unless the whole input was consumed.
func (r *stateReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes of trailing data", len(r.b)))
	}
	return r.err
}

func (r *stateReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return u
}

func (r *stateReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	i, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return i
}

// count reads a number of elements that follow, each at least one byte.
func (r *stateReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("element count beyond the end")
		return 0
	}
	return int(n)
}

func (r *stateReader) f64() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated float")
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func (r *stateReader) bool() bool {
	if r.err != nil {
		return false
	}
	if len(r.b) < 1 || r.b[0] > 1 {
		r.fail("bad bool")
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

// bytes returns the next byte string; it aliases the input.
func (r *stateReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("string beyond the end")
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *stateReader) str() string { return string(r.bytes()) }

// value reads what stateWriter.value wrote; depth bounds nesting.
func (r *stateReader) value() any { return r.valueDepth(0) }

func (r *stateReader) valueDepth(depth int) any {
	if r.err != nil {
		return nil
	}
	if depth > 100 {
		r.fail("values nested too deeply")
		return nil
	}
	if len(r.b) == 0 {
		r.fail("truncated value")
		return nil
	}
	tag := r.b[0]
	r.b = r.b[1:]
	switch tag {
	case valNull:
		return nil
	case valFalse:
		return false
	case valTrue:
		return true
	case valInt:
		return r.varint()
	case valFloat:
		return r.f64()
	case valString:
		return r.str()
	case valTime:
		sec, nsec := r.varint(), r.uvarint()
		if nsec >= 1e9 {
			r.fail("bad time")
			return nil
		}
		return time.Unix(sec, int64(nsec)).UTC()
	case valBytes:
		return append([]byte(nil), r.bytes()...)
	case valList:
		n := r.count()
		l := make([]any, n)
		for i := range l {
			l[i] = r.valueDepth(depth + 1)
		}
		return l
	case valMap:
		n := r.count()
		m := make(map[string]any, n)
		for range n {
			k := r.str()
			m[k] = r.valueDepth(depth + 1)
		}
		return m
	}
	r.fail(fmt.Sprintf("unknown value tag %d", tag))
	return nil
}
