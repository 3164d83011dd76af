package pipeline

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxPathSegment is the longest path segment, in bytes after escaping, that
// RenderPath lets a {{ }} value be part of. Filesystems allow 255; the rest
// is left for what sinks add to a name (part numbers, in-progress marks).
const MaxPathSegment = 200

// pathEscaped marks the ASCII bytes RenderPath percent-encodes in a value:
// the characters Hive and Spark escape in partition values (control
// characters, DEL, and " # % ' * / : = ? \ { [ ] ^), so that tools that
// read Hive-style partitions decode them back to the value.
var pathEscaped = func() (t [utf8.RuneSelf]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t[0x7f] = true
	for _, c := range `"#%'*/:=?\{[]^` {
		t[c] = true
	}
	return t
}()

// RenderPath appends the template rendered for r to dst as a file path: the
// literal text is used as it is, and every {{ }} value is escaped so that
// it stays inside the path segment (the text between two "/" of the
// literal) that it is written in:
//
//   - the bytes Hive escapes in partition values are percent-encoded,
//     upper case: "/" is %2F, "\" %5C, ":" %3A, "=" %3D, "%" %25, a newline
//     %0A (see pathEscaped); so are the C1 control characters (U+0080 to
//     U+009F) and bytes that are not UTF-8, byte by byte. Other Unicode is
//     kept as it is;
//   - dots that begin a segment are encoded as %2E, so that a value never
//     makes a segment ".", ".." or a hidden name: "..", ".env" and "."
//     render as %2E%2E, %2Eenv and %2E.
//
// Decoding a segment with url.PathUnescape (or Hive's unescapePathName)
// gives back the values it was made of. The segments, and so the directory
// depth, come from the literal text alone: out/{{ user }}.jsonl renders
// into out/ whatever user holds.
//
// A record is refused with an error, and nothing that could be used is
// appended, when a value is empty (a missing field or null included: the
// segment would be hidden, empty, or the name of another record's file;
// {{ user ?? "none" }} gives a default), when a segment holding a value
// is "." or ".." (a literal dot next to a value of dots), or when a segment
// holding a value is longer than MaxPathSegment bytes.
func (t *Template) RenderPath(dst []byte, r *Record) ([]byte, error) {
	start := len(dst)
	seg := start   // where the current segment starts in dst
	var last *Expr // the last value's expression in the current segment; nil: none
	for _, p := range t.parts {
		if p.expr == nil {
			lit := p.lit
			for {
				i := strings.IndexByte(lit, '/')
				if i < 0 {
					dst = append(dst, lit...)
					break
				}
				dst = append(dst, lit[:i]...)
				if last != nil {
					if err := checkPathSegment(dst[seg:], last); err != nil {
						return dst[:start], err
					}
				}
				dst = append(dst, '/')
				seg, last = len(dst), nil
				lit = lit[i+1:]
			}
			continue
		}
		v, err := p.expr.Eval(r)
		if err != nil {
			return dst[:start], err
		}
		vs := len(dst)
		dst = AppendText(dst, v)
		if len(dst) == vs {
			name := strings.TrimSpace(p.expr.Source)
			return dst[:start], fmt.Errorf("{{ %s }} is empty or null, and a path segment needs a value (for a default, write {{ %s ?? \"none\" }})", name, name)
		}
		if !pathValueClean(dst[vs:], vs == seg) {
			t.scratch = append(t.scratch[:0], dst[vs:]...)
			dst = appendPathValue(dst[:vs], t.scratch, vs == seg)
		}
		last = p.expr
	}
	if last != nil {
		if err := checkPathSegment(dst[seg:], last); err != nil {
			return dst[:start], err
		}
	}
	return dst, nil
}

// checkPathSegment checks a rendered segment that holds a value of e.
func checkPathSegment(seg []byte, e *Expr) error {
	name := strings.TrimSpace(e.Source)
	switch {
	case len(seg) > MaxPathSegment:
		return fmt.Errorf("{{ %s }} makes a path segment of %d bytes, more than %d (after escaping): %q...", name, len(seg), MaxPathSegment, seg[:32])
	case string(seg) == "." || string(seg) == "..":
		return fmt.Errorf("{{ %s }} makes the path segment %q", name, seg)
	}
	return nil
}

// pathValueClean reports whether appendPathValue would leave v as it is.
func pathValueClean(v []byte, segmentStart bool) bool {
	if segmentStart && v[0] == '.' {
		return false
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if pathEscaped[c] {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && n == 1 || r <= 0x9f {
			return false
		}
		i += n
	}
	return true
}

// appendPathValue appends v to dst escaped as RenderPath describes;
// segmentStart says whether v begins a path segment.
func appendPathValue(dst, v []byte, segmentStart bool) []byte {
	const hex = "0123456789ABCDEF"
	esc := func(dst []byte, b []byte) []byte {
		for _, c := range b {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
		return dst
	}
	i := 0
	if segmentStart {
		for i < len(v) && v[i] == '.' {
			dst = append(dst, "%2E"...)
			i++
		}
	}
	for i < len(v) {
		c := v[i]
		if c < utf8.RuneSelf {
			if pathEscaped[c] {
				dst = esc(dst, v[i:i+1])
			} else {
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && n == 1 || r <= 0x9f {
			dst = esc(dst, v[i:i+n])
		} else {
			dst = append(dst, v[i:i+n]...)
		}
		i += n
	}
	return dst
}

// CheckRelativePath returns an error unless the literal text of the
// template keeps every path RenderPath renders inside the directory it is
// joined to, in segments a reader sees: relative (not starting with "/"),
// with no empty, ".", ".." or hidden (starting with a dot) segment of
// literal text, and no backslash. Values cannot add segments (RenderPath
// escapes "/"), so this is a check of the configuration, made once.
func (t *Template) CheckRelativePath() error {
	// Each segment twice: as checked (a value stands as "v": never empty,
	// never a leading dot) and as shown (a value as its {{ }} source).
	type segment struct{ check, show string }
	segs := []segment{{}}
	for _, p := range t.parts {
		if p.expr != nil {
			cur := &segs[len(segs)-1]
			cur.check += "v"
			cur.show += "{{" + p.expr.Source + "}}"
			continue
		}
		for i, lit := range strings.Split(p.lit, "/") {
			if i > 0 {
				segs = append(segs, segment{})
			}
			cur := &segs[len(segs)-1]
			cur.check += lit
			cur.show += lit
		}
	}
	if len(segs) > 1 && segs[0].check == "" {
		return fmt.Errorf("template %q: want a relative path, not one starting with \"/\"", t.Source)
	}
	for _, seg := range segs {
		switch {
		case strings.Contains(seg.check, `\`):
			return fmt.Errorf("template %q: want \"/\" between path segments, not a backslash", t.Source)
		case seg.check == "":
			return fmt.Errorf("template %q: a path segment is empty (\"//\", or \"/\" at an end)", t.Source)
		case seg.check == "." || seg.check == "..":
			return fmt.Errorf("template %q: a path segment is %q; the path must stay inside the output directory", t.Source, seg.check)
		case seg.check[0] == '.':
			return fmt.Errorf("template %q: the path segment %q starts with a dot: hidden, so readers such as Spark, Hive and Trino skip it", t.Source, seg.show)
		}
	}
	return nil
}
