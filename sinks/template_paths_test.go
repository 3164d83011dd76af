package sinks

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/weirhq/weir/pipeline"
)

// hostileValues are values of a templated path segment that try to leave
// the output directory, add or remove directory levels, hide a file, or
// make a name no tool can handle; nil is a missing field.
func hostileValues() []any {
	return []any{
		"../../../tmp/escaped", "../x", "..", ".", "/abs", "/", "a/../../b", "a/b", `a\b`, `..\..\x`,
		"", nil, ".hidden", "...", "./x", "x/.", "x/..", "\x00", "a\nb", "a\rb", "\ttab", "\x1b[31mred", "\x7f",
		"x\u0085y", "\xff\xfe", "café", "日本/語", "🙂\u202egnp", "%2F%2E%2E", "100%", "x:y", "k=v", "*?\"'#[]{}^",
		" ", "~root", "$HOME", "-rf", strings.Repeat("a", 300), strings.Repeat("/", pipeline.MaxPathSegment+1), strings.Repeat("é", 150),
		"alice", int64(42),
	}
}

// refusedValue reports whether a hostile value must be dead-lettered (it
// cannot be made into a safe segment) rather than escaped: empty or
// missing, or too long. The long values of hostileValues are over 200
// bytes before escaping, and the others are short enough to fit escaped
// byte for byte (3 bytes each).
func refusedValue(v any) (bool, string) {
	s, _ := v.(string)
	switch {
	case v == nil || v == "":
		return true, "is empty or null"
	case len(s) > pipeline.MaxPathSegment:
		return true, "more than 200"
	case 3*len(s)+len(".jsonl") > pipeline.MaxPathSegment:
		panic(fmt.Sprintf("hostile value %q: neither short nor long", s))
	}
	return false, ""
}

// checkSegment fails unless seg is a plain, visible name that decodes back
// to want.
func checkSegment(t *testing.T, seg, want string) {
	t.Helper()
	if seg == "" || seg[0] == '.' || !utf8.ValidString(seg) || len(seg) > pipeline.MaxPathSegment ||
		strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f || r == '\\' }) {
		t.Errorf("segment %q: want a visible name of printable UTF-8, no backslash, at most %d bytes", seg, pipeline.MaxPathSegment)
	}
	if got, err := url.PathUnescape(seg); err != nil || got != want {
		t.Errorf("segment %q decodes to %q, %v; want %q", seg, got, err, want)
	}
}

// TestFileSinkHostilePathValues is the traversal of issue 18: stdin →
// logfmt → file: {path: 'out/{{ date(ts) }}/{{ user }}.jsonl'} with
// user=../../../tmp/escaped wrote outside out/, and an empty user made the
// hidden file out/<date>/.jsonl. Every file written must be
// out/<date>/<name>.jsonl, with <name> decoding back to the user of each
// of its records; the records that cannot be given such a name are the
// ones Check refuses, and nothing else is.
func TestFileSinkHostilePathValues(t *testing.T) {
	for _, g := range []pipeline.Guarantee{pipeline.ExactlyOnce, pipeline.AtLeastOnce} {
		t.Run(string(g), func(t *testing.T) {
			// out/ is deep in root, so that a value escaping it still
			// lands in root, where the test sees it.
			root := t.TempDir()
			out := filepath.Join(root, "a", "b", "c", "out")
			s := newFileSink(t, root, g, out+"/{{ date(ts) }}/{{ user }}.jsonl", nil)
			ctx := context.Background()
			if g == pipeline.ExactlyOnce {
				if err := s.Recover(ctx, nil); err != nil {
					t.Fatal(err)
				}
			}
			var written []*pipeline.Record
			want := map[string]int{} // user as text → records written
			for i, v := range hostileValues() {
				r := &pipeline.Record{}
				r.SetFields().Set("ts", "2026-01-02T03:04:05Z")
				r.Fields().Set("i", int64(i))
				if v != nil {
					r.Fields().Set("user", v)
				}
				err := s.Check(r)
				refuse, reason := refusedValue(v)
				if refuse {
					if err == nil || !strings.HasPrefix(err.Error(), "file: path: ") || !strings.Contains(err.Error(), reason) {
						t.Errorf("user=%q: Check = %v, want the record refused: %s", v, err, reason)
					}
					continue
				}
				if err != nil {
					t.Errorf("user=%q: Check = %v, want it written under an escaped name", v, err)
					continue
				}
				written = append(written, r)
				want[string(pipeline.AppendText(nil, v))]++
			}
			for _, r := range written { // one at a time, so that one failure does not hide the others
				if err := s.Write(ctx, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
					t.Errorf("Write(user=%q): %v", r.Get("user"), err)
				}
			}
			if g == pipeline.ExactlyOnce {
				tok, err := s.PreCommit(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Commit(ctx, tok); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}

			got := map[string]int{}
			for _, f := range listFiles(t, root) {
				if strings.HasPrefix(f, "state/") {
					continue // the sink's own staging and flushed.json
				}
				rel, ok := strings.CutPrefix(f, "a/b/c/out/2026-01-02/")
				if !ok || strings.Contains(rel, "/") || !strings.HasSuffix(rel, ".jsonl") {
					t.Errorf("wrote %s: want a/b/c/out/2026-01-02/<name>.jsonl", f)
					continue
				}
				name := strings.TrimSuffix(rel, ".jsonl")
				user, _ := url.PathUnescape(name)
				checkSegment(t, rel, user+".jsonl")
				fh, err := os.Open(filepath.Join(root, f))
				if err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(fh)
				for sc.Scan() {
					var line map[string]any
					if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
						t.Fatalf("%s: %q: %v", f, sc.Text(), err)
					}
					u := fmt.Sprint(line["user"])
					if u != user && !(user == "\xff\xfe" && u == "\ufffd\ufffd") { // JSON output replaces invalid UTF-8
						t.Errorf("%s holds user %q, want %q", f, u, user)
					}
					got[user]++
				}
				fh.Close()
			}
			if len(got) != len(want) {
				t.Errorf("%d files, want one per value written (%d)", len(got), len(want))
			}
			for u, n := range want {
				if got[u] != n {
					t.Errorf("user %q: %d records in its file, want %d", u, got[u], n)
				}
			}
		})
	}
}

// TestColumnarHostilePartitionValues: partition_by values are escaped the
// same way in the parquet and arrow sinks: every part is in one partition
// directory of the output directory whose name decodes back to the value
// of each of its rows; a value that cannot be made safe is refused by
// Check, and no other is.
func TestColumnarHostilePartitionValues(t *testing.T) {
	for _, tc := range []struct {
		sink, partitionBy, prefix string
		read                      func(testing.TB, string) []map[string]any
	}{
		{"parquet", "user={{ user }}", "user=", func(t testing.TB, p string) []map[string]any { _, rows := readParquet(t, p); return rows }},
		{"arrow", "{{ user }}", "", func(t testing.TB, p string) []map[string]any { _, rows := readArrowFile(t, p); return rows }},
	} {
		t.Run(tc.sink, func(t *testing.T) {
			root := t.TempDir()
			lake := filepath.Join(root, "a", "b", "lake")
			tmpl := mustTemplate(t, tc.partitionBy)
			var sink pipeline.Sink
			var err error
			b := testBuild(filepath.Join(root, "data"), pipeline.ExactlyOnce)
			if tc.sink == "parquet" {
				cfg := NewParquetConfig()
				cfg.Path, cfg.PartitionBy, cfg.Schema = lake, tmpl, mustSchema(t, "struct<i: int64!, user: string>")
				sink, err = cfg.NewSink(b)
			} else {
				cfg := NewArrowConfig()
				cfg.Path, cfg.PartitionBy, cfg.Schema = lake, tmpl, mustSchema(t, "struct<i: int64!, user: string>")
				sink, err = cfg.NewSink(b)
			}
			if err != nil {
				t.Fatal(err)
			}
			s := sink.(*ColumnarSink)
			if err := s.Recover(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			var written []*pipeline.Record
			want := map[string][]int64{}
			for i, v := range hostileValues() {
				if str, isString := v.(string); v != nil && (!isString || !utf8.ValidString(str)) {
					continue // the schema refuses it first: a string column holds UTF-8
				}
				r := rec("i", int64(i))
				if v != nil {
					r.Fields().Set("user", v)
				}
				err := s.Check(r)
				if refuse, reason := refusedValue(v); refuse {
					if err == nil || !strings.Contains(err.Error(), tc.sink+": partition_by: ") || !strings.Contains(err.Error(), reason) {
						t.Errorf("user=%q: Check = %v, want the record refused: %s", v, err, reason)
					}
					continue
				}
				if err != nil {
					t.Errorf("user=%q: Check = %v, want it written in an escaped partition", v, err)
					continue
				}
				written = append(written, r)
				want[v.(string)] = append(want[v.(string)], int64(i))
			}
			mustWrite(t, s, written...)
			mustCommit(t, s, mustPreCommit(t, s, 1))

			got := map[string][]int64{}
			for _, f := range listFiles(t, root) {
				if strings.HasPrefix(f, "data/") {
					continue // staging
				}
				rel, ok := strings.CutPrefix(f, "a/b/lake/")
				dir, file, one := strings.Cut(rel, "/")
				if !ok || !one || strings.Contains(file, "/") || !strings.HasPrefix(dir, tc.prefix) {
					t.Errorf("wrote %s: want a/b/lake/%s<value>/<part>", f, tc.prefix)
					continue
				}
				user, _ := url.PathUnescape(strings.TrimPrefix(dir, tc.prefix))
				checkSegment(t, dir, tc.prefix+user)
				for _, row := range tc.read(t, filepath.Join(root, f)) {
					if u := row["user"]; u != user {
						t.Errorf("%s holds user %q, want %q", f, u, user)
					}
					got[user] = append(got[user], row["i"].(int64))
				}
			}
			for u := range got {
				slices.Sort(got[u])
			}
			if len(got) != len(want) {
				t.Errorf("%d partitions, want one per value written (%d)", len(got), len(want))
			}
			for u, is := range want {
				if !slices.Equal(got[u], is) {
					t.Errorf("user %q: rows %v, want %v", u, got[u], is)
				}
			}
		})
	}
}
