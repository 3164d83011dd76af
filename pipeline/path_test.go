package pipeline

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func pathRecord(kv ...any) *Record {
	r := &Record{}
	fs := r.SetFields()
	for i := 0; i < len(kv); i += 2 {
		fs.Set(kv[i].(string), kv[i+1])
	}
	return r
}

func mustTemplate(t testing.TB, src string) *Template {
	t.Helper()
	tp, err := CompileTemplate(src, Pos{})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestRenderPathEscapesValues: every hostile value either stays inside its
// segment, escaped so that it decodes back, or is refused.
func TestRenderPathEscapesValues(t *testing.T) {
	long := strings.Repeat("a", MaxPathSegment-len(".jsonl")+1)
	for _, tc := range []struct {
		tmpl  string
		value any
		want  string // "" with err
		err   string
	}{
		{"out/{{ v }}.jsonl", "alice", "out/alice.jsonl", ""},
		{"out/{{ v }}.jsonl", "../../../tmp/escaped", "out/%2E%2E%2F..%2F..%2Ftmp%2Fescaped.jsonl", ""},
		{"out/{{ v }}/x", "..", "out/%2E%2E/x", ""},
		{"out/{{ v }}/x", ".", "out/%2E/x", ""},
		{"out/{{ v }}.jsonl", ".env", "out/%2Eenv.jsonl", ""},
		{"out/x{{ v }}.jsonl", "..", "out/x...jsonl", ""}, // dots inside a segment are harmless
		{"out/{{ v }}", "/abs", "out/%2Fabs", ""},
		{"out/{{ v }}", "a/../../b", "out/a%2F..%2F..%2Fb", ""},
		{"out/{{ v }}", `a\b`, "out/a%5Cb", ""},
		{"out/{{ v }}", "a\x00b\nc\rd\x1be\x7f", "out/a%00b%0Ac%0Dd%1Be%7F", ""},
		{"out/{{ v }}", "x\u0085y", "out/x%C2%85y", ""},   // C1 control (NEL)
		{"out/{{ v }}", "x\xffy\xc3", "out/x%FFy%C3", ""}, // not UTF-8
		{"out/{{ v }}", "café/日本", "out/café%2F日本", ""},   // Unicode is kept
		{"out/{{ v }}", "100%", "out/100%25", ""},         // so that decoding is exact
		{"out/{{ v }}", `"#'*:=?{[]^}`, "out/%22%23%27%2A%3A%3D%3F%7B%5B%5D%5E}", ""},
		{"dt={{ v }}", "2026-01-01T10:00:00Z", "dt=2026-01-01T10%3A00%3A00Z", ""},
		{"n={{ v }}", int64(42), "n=42", ""},
		{"out/{{ v }}.jsonl", "", "", "is empty or null"},
		{"out/{{ v }}.jsonl", nil, "", "is empty or null"},
		{"out/{{ missing }}.jsonl", "x", "", "is empty or null"},
		{"out/.{{ v }}/x", ".", "", `makes the path segment ".."`},
		{"out/{{ v }}.jsonl", long, "", "more than 200"},
		{"out/{{ v }}.jsonl", strings.Repeat("/", 66), "", "more than 200"},                             // 198 bytes escaped, + .jsonl
		{"out/{{ v }}.jsonl", strings.Repeat("é", 97), "out/" + strings.Repeat("é", 97) + ".jsonl", ""}, // 194 + 6 bytes
	} {
		tp := mustTemplate(t, tc.tmpl)
		got, err := tp.RenderPath([]byte("prefix:"), pathRecord("v", tc.value))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s with v=%q: %q, %v; want an error containing %q", tc.tmpl, tc.value, got, err, tc.err)
			}
			if string(got) != "prefix:" {
				t.Errorf("%s with v=%q: appended %q along with the error", tc.tmpl, tc.value, got)
			}
			continue
		}
		if err != nil || string(got) != "prefix:"+tc.want {
			t.Errorf("%s with v=%q: %q, %v; want %q", tc.tmpl, tc.value, got, err, "prefix:"+tc.want)
		}
	}
}

// TestRenderPathKeepsLiteralText: the literal text is the skeleton, used as
// written (a relative "../" or an absolute directory is the
// configuration's business), and a value next to literal text is escaped
// from where its segment starts.
func TestRenderPathKeepsLiteralText(t *testing.T) {
	r := pathRecord("a", "..", "b", "x/y")
	for _, tc := range []struct{ tmpl, want string }{
		{"../lake/{{ b }}", "../lake/x%2Fy"},
		{"/var/out/{{ a }}{{ b }}", "/var/out/%2E%2Ex%2Fy"},
		{"/var/out/{{ b }}{{ a }}", "/var/out/x%2Fy.."},
		{"{{ a }}", "%2E%2E"},
		{"{{ a }}/{{ a }}/", "%2E%2E/%2E%2E/"},
		{"out/plain.jsonl", "out/plain.jsonl"},
	} {
		got, err := mustTemplate(t, tc.tmpl).RenderPath(nil, r)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
}

func TestCheckRelativePath(t *testing.T) {
	for _, tc := range []struct{ tmpl, err string }{
		{"dt={{ date(ts) }}/hour={{ hour(ts) }}", ""},
		{"{{ service }}", ""},
		{"a.{{ x }}/b", ""},
		{"{{ x }}./b", ""},
		{"/dt={{ x }}", "relative"},
		{"dt={{ x }}/../up", `".."`},
		{"./dt={{ x }}", `"."`},
		{"dt={{ x }}//h={{ y }}", "empty"},
		{"dt={{ x }}/", "empty"},
		{`dt={{ x }}\h={{ y }}`, "backslash"},
		{".dt={{ x }}", "starts with a dot"},
	} {
		err := mustTemplate(t, tc.tmpl).CheckRelativePath()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.tmpl, err, tc.err)
		}
	}
}

// FuzzRenderPath: whatever two values hold, a rendered path has exactly the
// segments of the literal text, stays under the directory it is joined to,
// holds no control character, backslash, invalid UTF-8, ".", ".." or
// hidden segment, and decodes back to the values; a value is refused only
// when it is empty or its segment would be too long. The seed corpus is in
// testdata/fuzz/FuzzRenderPath.
func FuzzRenderPath(f *testing.F) {
	f.Add("alice", "2026-01-01")
	tmpl := mustTemplate(f, "out/{{ a }}/x{{ b }}.jsonl")
	single := mustTemplate(f, "{{ a }}")
	f.Fuzz(func(t *testing.T, a, b string) {
		r := pathRecord("a", a, "b", b)
		got, err := tmpl.RenderPath(nil, r)
		if err != nil {
			msg := err.Error()
			switch {
			case a == "" || b == "":
				if !strings.Contains(msg, "is empty or null") {
					t.Fatalf("a=%q b=%q: %v, want the empty value named", a, b, err)
				}
			case len(a) <= MaxPathSegment/3 && len(b) <= (MaxPathSegment-len("x.jsonl"))/3:
				t.Fatalf("a=%q b=%q: refused (%v), but no segment can be too long", a, b, err)
			case !strings.Contains(msg, "more than"):
				t.Fatalf("a=%q b=%q: %v", a, b, err)
			}
			if len(got) != 0 {
				t.Fatalf("a=%q b=%q: appended %q with an error", a, b, got)
			}
		} else {
			p := string(got)
			if !filepath.IsLocal(p) || !strings.HasPrefix(filepath.Join("/root", p), "/root/out/") {
				t.Fatalf("a=%q b=%q: %q leaves out/", a, b, p)
			}
			segs := strings.Split(p, "/")
			if len(segs) != 3 || segs[0] != "out" {
				t.Fatalf("a=%q b=%q: %q has segments %q, want out/<a>/x<b>.jsonl", a, b, p, segs)
			}
			for _, s := range segs[1:] {
				checkSafeSegment(t, s, a, b)
			}
			if da, err := url.PathUnescape(segs[1]); err != nil || da != a {
				t.Fatalf("a=%q: segment %q decodes to %q, %v", a, segs[1], da, err)
			}
			if db, err := url.PathUnescape(segs[2]); err != nil || db != "x"+b+".jsonl" {
				t.Fatalf("b=%q: segment %q decodes to %q, %v", b, segs[2], db, err)
			}
		}
		got, err = single.RenderPath(nil, r)
		if err != nil {
			if a != "" && len(a) <= MaxPathSegment/3 {
				t.Fatalf("a=%q alone: refused: %v", a, err)
			}
			return
		}
		if strings.Contains(string(got), "/") {
			t.Fatalf("a=%q alone: %q has a separator", a, got)
		}
		checkSafeSegment(t, string(got), a, b)
		if da, err := url.PathUnescape(string(got)); err != nil || da != a {
			t.Fatalf("a=%q alone: %q decodes to %q, %v", a, got, da, err)
		}
	})
}

func checkSafeSegment(t *testing.T, s, a, b string) {
	t.Helper()
	switch {
	case s == "" || s == "." || s == ".." || s[0] == '.':
		t.Fatalf("a=%q b=%q: segment %q", a, b, s)
	case len(s) > MaxPathSegment:
		t.Fatalf("a=%q b=%q: segment of %d bytes", a, b, len(s))
	case !utf8.ValidString(s):
		t.Fatalf("a=%q b=%q: segment %q is not UTF-8", a, b, s)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f || r == '\\' }):
		t.Fatalf("a=%q b=%q: segment %q holds a control character or a backslash", a, b, s)
	}
}
