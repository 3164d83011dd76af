package pipeline

import (
	"encoding/binary"
	"math/bits"

	"github.com/buger/jsonparser"
)

// jsonScanner validates one JSON document and indexes the members of its
// top-level object in the same pass: ParseJSONObject used to validate with
// gjson and then split with jsonparser, reading every byte twice.
//
// It accepts exactly what encoding/json.Valid accepts (RFC 8259: no
// trailing commas, no leading zeros, no control bytes in strings, any other
// byte in strings, invalid UTF-8 included; nesting at most 10,000 deep), so
// a record that parses here is one valid JSON object, and every other line
// is a dead letter. It is portable Go: strings are searched eight bytes at a
// time with word arithmetic (SWAR), which needs no CPU feature, so there is
// no second code path to keep in step.
//
// Its results are those of the gjson+jsonparser pair (FuzzParseJSONObject
// holds them against that pair and against encoding/json): the same names
// (keys with escapes unescaped by jsonparser.Unescape), the same raw value
// bytes (strings without their quotes, containers with their brackets) and
// the same rawKind.
type jsonScanner struct {
	data []byte
}

// jsonMaxDepth is encoding/json's limit on nesting (the top-level value
// counts as one level).
const jsonMaxDepth = 10000

const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// scanObject fills fs (already empty) from data. It returns errBadJSON
// for input that is not valid JSON and errNotObject for a valid document
// that is not an object.
func (fs *Fields) scanObject(data []byte) error {
	s := jsonScanner{data: data}
	i := skipSpace(data, 0)
	if i >= len(data) {
		return errBadJSON
	}
	if data[i] != '{' {
		end, ok := s.value(i, 1)
		if ok && skipSpace(data, end) == len(data) {
			return errNotObject
		}
		return errBadJSON
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		if skipSpace(data, i+1) != len(data) {
			return errBadJSON
		}
		return nil
	}
	var seen uint64 // a one-word Bloom filter of the names so far
	for {
		if i >= len(data) || data[i] != '"' {
			return errBadJSON
		}
		kend, kesc, ok := s.str(i + 1)
		if !ok {
			return errBadJSON
		}
		key := data[i+1 : kend]
		i = skipSpace(data, kend+1)
		if i >= len(data) || data[i] != ':' {
			return errBadJSON
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return errBadJSON
		}
		var f field
		switch c := data[i]; c {
		case '"':
			end, esc, ok := s.str(i + 1)
			if !ok {
				return errBadJSON
			}
			f.raw, f.kind = data[i+1:end], rawString
			if esc {
				f.kind = rawEscapedString
			}
			i = end + 1
		case '{', '[':
			end, ok := s.container(i, 2)
			if !ok {
				return errBadJSON
			}
			f.raw, f.kind = data[i:end], rawObject
			if c == '[' {
				f.kind = rawArray
			}
			i = end
		default:
			end, ok := s.value(i, 2)
			if !ok {
				return errBadJSON
			}
			f.raw = data[i:end]
			switch c {
			case 't', 'f':
				f.kind = rawBool
			case 'n':
				f.kind = rawNull
			default:
				f.kind = rawNumber
			}
			i = end
		}
		if kesc {
			// As jsonparser did: unescaped into a string of its own.
			u, err := jsonparser.Unescape(key, nil)
			if err != nil {
				return errBadJSON
			}
			f.name = string(u)
		} else {
			f.name = bytesToString(key)
		}
		if bit := nameBit(f.name); seen&bit == 0 {
			seen |= bit
			fs.push(&f)
		} else if j := fs.index(f.name); j >= 0 {
			fs.f[j] = f
		} else {
			fs.push(&f)
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return errBadJSON
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
			continue
		case '}':
			if skipSpace(data, i+1) != len(data) {
				return errBadJSON
			}
			return nil
		}
		return errBadJSON
	}
}

// str scans a string whose opening quote is just before i. It returns the
// index of the closing quote and whether the string holds an escape.
func (s *jsonScanner) str(i int) (end int, escaped, ok bool) {
	data := s.data
	for {
		// Eight bytes at a time: find the first quote, backslash or
		// control byte. The lowest flagged byte of each test is exact.
		for i+8 <= len(data) {
			v := binary.LittleEndian.Uint64(data[i:])
			q := v ^ ('"' * swarOnes)
			b := v ^ ('\\' * swarOnes)
			m := ((q - swarOnes) &^ q) | ((b - swarOnes) &^ b) | ((v - 0x20*swarOnes) &^ v)
			m &= swarHighs
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(data) && jsonPlain[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, false, false
		}
		switch c := data[i]; {
		case c == '"':
			return i, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(data) {
				return 0, false, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return 0, false, false
				}
				i += 6
			default:
				return 0, false, false
			}
		default: // a control byte
			return 0, false, false
		}
	}
}

// jsonPlain marks the bytes that stand for themselves inside a string.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// value scans any JSON value starting at i (no white space before it) at
// nesting depth depth, and returns the index just after it.
func (s *jsonScanner) value(i, depth int) (int, bool) {
	data := s.data
	if i >= len(data) {
		return 0, false
	}
	switch c := data[i]; c {
	case '"':
		end, _, ok := s.str(i + 1)
		return end + 1, ok
	case '{', '[':
		return s.container(i, depth)
	case 't':
		return i + 4, hasAt(data, i, "true")
	case 'f':
		return i + 5, hasAt(data, i, "false")
	case 'n':
		return i + 4, hasAt(data, i, "null")
	}
	return s.number(i)
}

func hasAt(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at i.
func (s *jsonScanner) number(i int) (int, bool) {
	data := s.data
	if i < len(data) && data[i] == '-' {
		i++
	}
	if i >= len(data) {
		return 0, false
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i++
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		i++
		start := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		start := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	return i, true
}

// container scans the object or array opening at i, at nesting depth
// depth, and returns the index just after its closing bracket.
func (s *jsonScanner) container(i, depth int) (int, bool) {
	if depth > jsonMaxDepth {
		return 0, false
	}
	data := s.data
	obj := data[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == closer {
		return i + 1, true
	}
	for {
		if obj {
			if i >= len(data) || data[i] != '"' {
				return 0, false
			}
			end, _, ok := s.str(i + 1)
			if !ok {
				return 0, false
			}
			i = skipSpace(data, end+1)
			if i >= len(data) || data[i] != ':' {
				return 0, false
			}
			i = skipSpace(data, i+1)
		}
		end, ok := s.value(i, depth+1)
		if !ok {
			return 0, false
		}
		i = skipSpace(data, end)
		if i >= len(data) {
			return 0, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case closer:
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// push appends f, writing it word by word into room the slice already has:
// a whole-struct copy of a type with pointers into the heap takes the
// runtime's bulk write-barrier path while the collector runs, which was a
// tenth of the p1 pipeline's time.
func (fs *Fields) push(f *field) {
	n := len(fs.f)
	if n == cap(fs.f) {
		fs.f = append(fs.f, *f)
		return
	}
	fs.f = fs.f[:n+1]
	d := &fs.f[n]
	d.name, d.val, d.raw, d.kind, d.decoded = f.name, nil, f.raw, f.kind, false
}
