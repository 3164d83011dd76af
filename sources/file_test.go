package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/klauspost/compress/gzip"
	"github.com/weirhq/weir/pipeline"
)

// testBuild returns a Build for a source under test.
func testBuild(t testing.TB, batch int) pipeline.Build {
	return pipeline.Build{
		Pipeline:  "test",
		Component: "test/sources[0]/x",
		Index:     3,
		BatchSize: batch,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now:       time.Now,
	}
}

// fileCfg returns a file config for paths with test-friendly intervals.
func fileCfg(paths ...string) *FileConfig {
	c := NewFileConfig(paths...)
	c.GlobInterval = 20 * time.Millisecond
	c.PollInterval = 5 * time.Millisecond
	c.RotateWait = 100 * time.Millisecond
	return c
}

func newFileSource(t testing.TB, c *FileConfig, batch int) *fileSource {
	t.Helper()
	src, err := c.NewSource(testBuild(t, batch))
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	return src.(*fileSource)
}

// got is what a source produced.
type got struct {
	recs []*pipeline.Record
	dead []pipeline.DeadLetter
}

func (g got) values() []string {
	out := make([]string, len(g.recs))
	for i, r := range g.recs {
		out[i] = string(r.Value)
	}
	return out
}

// readToEOF reads a finite source until io.EOF, checking the batch limit.
func readToEOF(t testing.TB, src pipeline.Source, batch int) got {
	t.Helper()
	var g got
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b := &pipeline.Batch{}
		_, err := src.Read(context.Background(), b)
		if len(b.Records) > batch {
			t.Fatalf("Read returned %d records, batch size is %d", len(b.Records), batch)
		}
		g.recs = append(g.recs, b.Records...)
		g.dead = append(g.dead, b.Dead...)
		if errors.Is(err, io.EOF) {
			if len(b.Records) > 0 {
				t.Fatalf("Read returned records with io.EOF")
			}
			return g
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	t.Fatalf("no io.EOF within the deadline")
	return g
}

// readN reads up to n records (stops early at EOF), one Read at a time.
func readN(t testing.TB, src pipeline.Source, n int) got {
	t.Helper()
	var g got
	for len(g.recs) < n {
		b := &pipeline.Batch{}
		_, err := src.Read(context.Background(), b)
		g.recs = append(g.recs, b.Records...)
		g.dead = append(g.dead, b.Dead...)
		if errors.Is(err, io.EOF) {
			return g
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	return g
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t testing.TB, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func equalStrings(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d\ngot:  %q\nwant: %q", what, len(got), len(want), clip(got), clip(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: value %d: got %q, want %q", what, i, clipS(got[i]), clipS(want[i]))
		}
	}
}

func clip(s []string) []string {
	if len(s) > 20 {
		return append(s[:20:20], "...")
	}
	return s
}

func clipS(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// expectedLines splits content the way the source must: every "\n"
// terminated line and a final unterminated one, "\r\n" stripped, with the
// byte offset and 1-based number of each.
type lineAt struct {
	value string
	off   int64
	line  int64
}

func expectedLines(content string) []lineAt {
	var out []lineAt
	off := 0
	for n := int64(1); off < len(content); n++ {
		i := strings.IndexByte(content[off:], '\n')
		end := off + i
		next := end + 1
		if i < 0 {
			end, next = len(content), len(content)
		}
		v := strings.TrimSuffix(content[off:end], "\r")
		out = append(out, lineAt{v, int64(off), n})
		off = next
	}
	return out
}

// checkRecords compares records with the expected lines of one file.
func checkRecords(t testing.TB, recs []*pipeline.Record, path string, want []lineAt) {
	t.Helper()
	if len(recs) != len(want) {
		t.Fatalf("%s: got %d records, want %d", path, len(recs), len(want))
	}
	for i, r := range recs {
		w := want[i]
		if string(r.Value) != w.value || r.Origin.Name != path || r.Origin.Offset != w.off || r.Origin.Line != w.line {
			t.Fatalf("%s record %d: got %q at %s:%d line %d, want %q at %s:%d line %d",
				path, i, clipS(string(r.Value)), r.Origin.Name, r.Origin.Offset, r.Origin.Line, clipS(w.value), path, w.off, w.line)
		}
		if r.Source != 3 || r.Time.IsZero() {
			t.Fatalf("record %d: Source %d Time %v; want Source 3 and a read time", i, r.Source, r.Time)
		}
	}
}

func TestFileFiniteGlobsOrderAndOrigins(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"b.log":          "b1\nb2\n",
		"a.log":          "a1\n\na3 with more text\n",
		"c.txt":          "not matched\n",
		"skip.log":       "excluded by name\n",
		"sub/d.log":      "d1\n",
		"sub/old/e.log":  "excluded by path\n",
		"sub/deep/f.log": "f1\n",
	}
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	c := fileCfg(filepath.Join(dir, "*.log"), filepath.Join(dir, "sub/**/*.log"), filepath.Join(dir, "a.log"))
	c.Exclude = []string{"skip.log", filepath.Join(dir, "sub/old/*")}
	src := newFileSource(t, c, 2)
	g := readToEOF(t, src, 2)

	order := []string{"a.log", "b.log", "sub/d.log", "sub/deep/f.log"} // sorted full paths
	var at int
	for _, name := range order {
		p := filepath.Join(dir, name)
		want := expectedLines(files[name])
		if at+len(want) > len(g.recs) {
			t.Fatalf("only %d records; want %s next", len(g.recs), name)
		}
		checkRecords(t, g.recs[at:at+len(want)], p, want)
		at += len(want)
	}
	if at != len(g.recs) {
		t.Fatalf("got %d records, want %d: %q", len(g.recs), at, g.values())
	}
	// io.EOF again on the next call.
	if _, err := src.Read(context.Background(), &pipeline.Batch{}); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after EOF: %v, want io.EOF", err)
	}
}

func TestFileFinalLineCRLFAndEmptyLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.log")
	content := "a\r\nbb\r\n\r\n\nccc\rx\r\nlast without newline\r"
	writeFile(t, p, content)
	g := readToEOF(t, newFileSource(t, fileCfg(p), 1024), 1024)
	checkRecords(t, g.recs, p, expectedLines(content))
	equalStrings(t, "values", g.values(), []string{"a", "bb", "", "", "ccc\rx", "last without newline"})
}

func TestFileEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "empty.log"), "")
	g := readToEOF(t, newFileSource(t, fileCfg(filepath.Join(dir, "*.log")), 10), 10)
	if len(g.recs)+len(g.dead) != 0 {
		t.Fatalf("empty file gave %d records", len(g.recs))
	}
	g = readToEOF(t, newFileSource(t, fileCfg(filepath.Join(dir, "none/*.log")), 10), 10)
	if len(g.recs) != 0 {
		t.Fatalf("no file gave %d records", len(g.recs))
	}
}

// TestFileBufferBoundaries reads random lines through tiny buffers and
// batch sizes, so lines straddle every refill and batch boundary.
func TestFileBufferBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	for trial := range 30 {
		var sb strings.Builder
		for range rng.IntN(200) {
			n := rng.IntN(90)
			if rng.IntN(10) == 0 {
				n = 0
			}
			for range n {
				sb.WriteByte(byte('a' + rng.IntN(26)))
			}
			if rng.IntN(5) == 0 {
				sb.WriteByte('\r')
			}
			sb.WriteByte('\n')
		}
		if rng.IntN(2) == 0 {
			sb.WriteString("tail")
		}
		content := sb.String()
		p := filepath.Join(dir, fmt.Sprintf("t%d.log", trial))
		writeFile(t, p, content)
		c := fileCfg(p)
		c.readBuffer = 1 + rng.IntN(200)
		c.MaxLineBytes = 100
		batch := 1 + rng.IntN(9)
		g := readToEOF(t, newFileSource(t, c, batch), batch)
		if len(g.dead) != 0 {
			t.Fatalf("trial %d: %d dead letters", trial, len(g.dead))
		}
		checkRecords(t, g.recs, p, expectedLines(content))
	}
}

func TestFileMaxLineBytes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "long.log")
	huge := strings.Repeat("x", 8<<20) // 8 MiB: far over the limit and the buffer
	content := "short\n" +
		strings.Repeat("a", 100) + "\r\n" + // exactly the limit, CRLF: accepted
		strings.Repeat("b", 101) + "\n" + // one over
		huge + "\n" +
		"after\n" +
		huge // unterminated at EOF
	writeFile(t, p, content)
	c := fileCfg(p)
	c.MaxLineBytes = 100
	c.readBuffer = 4096
	src := newFileSource(t, c, 1024)
	g := readToEOF(t, src, 1024)

	equalStrings(t, "records", g.values(), []string{"short", strings.Repeat("a", 100), "after"})
	if g.recs[2].Origin.Line != 5 || g.recs[2].Origin.Offset != int64(6+102+102+len(huge)+1) {
		t.Fatalf("line after long lines at %+v", g.recs[2].Origin)
	}
	if len(g.dead) != 3 {
		t.Fatalf("got %d dead letters, want 3", len(g.dead))
	}
	wantOff := []int64{6 + 102, 6 + 102 + 102, int64(6 + 102 + 102 + len(huge) + 1 + 6)}
	wantLine := []int64{3, 4, 6}
	for i, d := range g.dead {
		if d.Reason != "too_long" || d.Component != "test/sources[0]/x" || !strings.HasPrefix(d.Error, "file: ") {
			t.Fatalf("dead %d: %+v", i, d)
		}
		if n := len(d.Record.Value); n > 100 || n == 0 {
			t.Fatalf("dead %d holds %d bytes; want its first bytes only (1..100)", i, n)
		}
		if d.Record.Origin.Offset != wantOff[i] || d.Record.Origin.Line != wantLine[i] || d.Record.Origin.Name != p {
			t.Fatalf("dead %d at %+v, want offset %d line %d", i, d.Record.Origin, wantOff[i], wantLine[i])
		}
	}
	// The 8 MiB lines were never held: no buffer grew past limit+2 or the read size.
	for _, buf := range src.pool.free {
		if len(buf) > 4096 {
			t.Fatalf("a read buffer grew to %d bytes", len(buf))
		}
	}
}

func TestFileLongLineFitsWhenAllowed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.log")
	long := strings.Repeat("y", 300<<10) // longer than the read buffer, under the limit
	writeFile(t, p, "a\n"+long+"\nb\n")
	c := fileCfg(p)
	c.readBuffer = 64 << 10
	g := readToEOF(t, newFileSource(t, c, 1024), 1024)
	equalStrings(t, "values", g.values(), []string{"a", long, "b"})
}

// TestFileValuesDoNotAlias checks that records keep their bytes after the
// source reads on (the read buffer is reused).
func TestFileValuesDoNotAlias(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.log")
	var sb strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&sb, "line %05d %s\n", i, strings.Repeat("z", i%50))
	}
	writeFile(t, p, sb.String())
	c := fileCfg(p)
	c.readBuffer = 1024
	src := newFileSource(t, c, 7)
	var kept [][]byte
	var copies []string
	for {
		b := &pipeline.Batch{}
		_, err := src.Read(context.Background(), b)
		for _, r := range b.Records {
			kept = append(kept, r.Value)
			copies = append(copies, string(r.Value))
			if cap(r.Value) != len(r.Value) {
				t.Fatalf("Value has spare capacity %d: appending would overwrite the next record", cap(r.Value)-len(r.Value))
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range kept {
		if string(kept[i]) != copies[i] {
			t.Fatalf("record %d changed after later reads: %q, was %q", i, kept[i], copies[i])
		}
	}
	if len(kept) != 5000 {
		t.Fatalf("got %d records", len(kept))
	}
}

func gzipBytes(t testing.TB, members ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range members {
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestFileGzip(t *testing.T) {
	dir := t.TempDir()
	var part1, part2 strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&part1, "first member line %d\n", i)
		fmt.Fprintf(&part2, "second member line %d\n", i)
	}
	part2.WriteString("no newline at the end")
	content := part1.String() + part2.String()
	p := filepath.Join(dir, "old.log.gz")
	if err := os.WriteFile(p, gzipBytes(t, part1.String(), part2.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	want := expectedLines(content)

	g := readToEOF(t, newFileSource(t, fileCfg(p), 1000), 1000)
	checkRecords(t, g.recs, p, want)

	// Position mid-file, restart, Seek: the rest exactly (re-read and skip).
	src := newFileSource(t, fileCfg(p), 1000)
	first := readN(t, src, 2500)
	pos, err := src.Position()
	if err != nil {
		t.Fatal(err)
	}
	src2 := newFileSource(t, fileCfg(p), 1000)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	rest := readToEOF(t, src2, 1000)
	checkRecords(t, append(first.recs, rest.recs...), p, want)

	// A finished gzip file is not read again.
	pos, _ = src2.Position()
	if !strings.Contains(string(pos), `"done":true`) {
		t.Fatalf("position of a finished gzip file: %s", pos)
	}
	src3 := newFileSource(t, fileCfg(p), 1000)
	if err := src3.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	if g := readToEOF(t, src3, 1000); len(g.recs) != 0 {
		t.Fatalf("second run read %d records", len(g.recs))
	}

	// gzip: false reads the compressed bytes as they are.
	c := fileCfg(p)
	c.Gzip = "false"
	if g := readToEOF(t, newFileSource(t, c, 1000), 1000); len(g.recs) == 0 || g.recs[0].Origin.Offset != 0 {
		t.Fatal("gzip: false read nothing")
	}
}

func TestFileGzipCorrupt(t *testing.T) {
	dir := t.TempDir()
	data := gzipBytes(t, strings.Repeat("some line of text\n", 5000))
	p := filepath.Join(dir, "cut.gz")
	if err := os.WriteFile(p, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "empty.gz"), "")
	writeFile(t, filepath.Join(dir, "junk.gz"), "this is not gzip\n")
	src := newFileSource(t, fileCfg(filepath.Join(dir, "*.gz")), 1024)
	g := readToEOF(t, src, 1024)
	for _, r := range g.recs {
		if string(r.Value) != "some line of text" {
			t.Fatalf("got %q from a cut gzip file", r.Value)
		}
	}
	if len(g.dead) != 2 {
		t.Fatalf("got %d dead letters, want 2 (cut.gz, junk.gz): %+v", len(g.dead), g.dead)
	}
	for _, d := range g.dead {
		if d.Reason != "corrupt" || !strings.Contains(d.Error, "decompress") {
			t.Fatalf("dead letter %+v", d)
		}
	}
}

// TestFilePositionRoundTrip cuts a multi-file read at many points: the
// records before the cut and after a restart from its position are the
// files' lines, each exactly once.
func TestFilePositionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	contents := map[string]string{}
	var all []string
	for _, name := range []string{"a.log", "b.log", "c.log"} {
		var sb strings.Builder
		for i := range 400 {
			fmt.Fprintf(&sb, "%s line %d %s\n", name, i, strings.Repeat("p", i%37))
		}
		sb.WriteString(name + " unterminated")
		contents[name] = sb.String()
		writeFile(t, filepath.Join(dir, name), sb.String())
		for _, l := range expectedLines(sb.String()) {
			all = append(all, l.value)
		}
	}
	glob := filepath.Join(dir, "*.log")
	for _, cut := range []int{0, 1, 17, 400, 401, 402, 800, 1203} {
		for _, batch := range []int{1, 13, 1024} {
			c := fileCfg(glob)
			c.readBuffer = 512
			src := newFileSource(t, c, batch)
			first := readN(t, src, cut)
			pos, err := src.Position()
			if err != nil {
				t.Fatal(err)
			}
			src2 := newFileSource(t, c, batch)
			if err := src2.Seek(context.Background(), pos); err != nil {
				t.Fatal(err)
			}
			rest := readToEOF(t, src2, batch)
			got := append(first.values(), rest.values()...)
			equalStrings(t, fmt.Sprintf("cut %d batch %d", cut, batch), got, all)
			// Origins continue across the restart.
			if len(rest.recs) > 0 && len(first.recs) > 0 {
				a, b := first.recs[len(first.recs)-1].Origin, rest.recs[0].Origin
				if a.Name == b.Name && b.Line != a.Line+1 {
					t.Fatalf("cut %d: line numbers jump from %d to %d", cut, a.Line, b.Line)
				}
			}
		}
	}
}

func TestFileFiniteRunTwiceReadsNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "one\ntwo\nthree\n")
	glob := filepath.Join(dir, "*.log")
	src := newFileSource(t, fileCfg(glob), 10)
	readToEOF(t, src, 10)
	pos, _ := src.Position()

	src2 := newFileSource(t, fileCfg(glob), 10)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	if g := readToEOF(t, src2, 10); len(g.recs) != 0 {
		t.Fatalf("second run read %q", g.values())
	}
	// Appended lines and new files are read by the next run.
	appendFile(t, p, "four\n")
	writeFile(t, filepath.Join(dir, "b.log"), "b\n")
	pos, _ = src2.Position()
	src3 := newFileSource(t, fileCfg(glob), 10)
	if err := src3.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	g := readToEOF(t, src3, 10)
	equalStrings(t, "third run", g.values(), []string{"four", "b"})
	if g.recs[0].Origin.Line != 4 || g.recs[0].Origin.Offset != 14 {
		t.Fatalf("appended line at %+v, want line 4 offset 14", g.recs[0].Origin)
	}
}

// TestFileRestartAfterRenameWhileDown: app.log was rotated (renamed to
// app.log.1, which the glob does not match) and a new app.log written
// while weir was down.
func TestFileRestartAfterRenameWhileDown(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "old 1\nold 2\nold 3\nold 4\n")
	src := newFileSource(t, fileCfg(p), 2)
	first := readN(t, src, 2)
	pos, _ := src.Position()
	_ = src.Close(context.Background())

	appendFile(t, p, "old 5\n")
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "new 1\nnew 2\n")

	src2 := newFileSource(t, fileCfg(p), 2)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	rest := readToEOF(t, src2, 2)
	equalStrings(t, "first", first.values(), []string{"old 1", "old 2"})
	equalStrings(t, "after restart", rest.values(), []string{"new 1", "new 2", "old 3", "old 4", "old 5"})
	if rest.recs[2].Origin.Name != p+".1" || rest.recs[2].Origin.Line != 3 || rest.recs[2].Origin.Offset != 12 {
		t.Fatalf("rotated file's record at %+v", rest.recs[2].Origin)
	}
}

func TestFileRestartAfterTruncateWhileDown(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "line 1 is fairly long\nline 2 is fairly long\nline 3\n")
	src := newFileSource(t, fileCfg(p), 2)
	readN(t, src, 2)
	pos, _ := src.Position()

	// copytruncate while down: same inode, now shorter than the offset.
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, "fresh\n")
	src2 := newFileSource(t, fileCfg(p), 10)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	g := readToEOF(t, src2, 10)
	equalStrings(t, "after truncation", g.values(), []string{"fresh"})
	if g.recs[0].Origin.Offset != 0 || g.recs[0].Origin.Line != 1 {
		t.Fatalf("origin %+v", g.recs[0].Origin)
	}
}

// TestFileRestartShorterSameHead: truncated while down and rewritten with
// the same first KiB, so only the size tells: start again at 0.
func TestFileRestartShorterSameHead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	head := strings.Repeat("h", 1100) + "\n"
	writeFile(t, p, head+"tail 1\ntail 2\n")
	src := newFileSource(t, fileCfg(p), 10)
	readToEOF(t, src, 10)
	pos, _ := src.Position()
	if err := os.Truncate(p, int64(len(head))); err != nil {
		t.Fatal(err)
	}
	src2 := newFileSource(t, fileCfg(p), 10)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	g := readToEOF(t, src2, 10)
	equalStrings(t, "after truncation", g.values(), []string{strings.TrimSuffix(head, "\n")})
}

// TestFileRestartFingerprintMismatch: the file at the checkpointed
// identity now has another head (an inode reused, or a file rewritten in
// place): it is read from the start, even though it is long enough.
func TestFileRestartFingerprintMismatch(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "aaaa\nbbbb\ncccc\n")
	src := newFileSource(t, fileCfg(p), 2)
	readN(t, src, 2)
	pos, _ := src.Position()

	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0) // keeps the inode
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("XXXX\nYYYY\nZZZZ\nWWWW\n")
	_ = f.Close()

	src2 := newFileSource(t, fileCfg(p), 10)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	g := readToEOF(t, src2, 10)
	equalStrings(t, "rewritten file", g.values(), []string{"XXXX", "YYYY", "ZZZZ", "WWWW"})
}

func TestFileRestartGoneFileDropped(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	writeFile(t, a, "a1\na2\n")
	writeFile(t, b, "b1\n")
	glob := filepath.Join(dir, "*.log")
	src := newFileSource(t, fileCfg(glob), 1)
	readN(t, src, 1)
	pos, _ := src.Position()
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	src2 := newFileSource(t, fileCfg(glob), 10)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	g := readToEOF(t, src2, 10)
	equalStrings(t, "after restart", g.values(), []string{"b1"})
	pos, _ = src2.Position()
	if strings.Contains(string(pos), "a.log") {
		t.Fatalf("position still names the deleted file: %s", pos)
	}
}

func TestFileSeekRejectsBadPositions(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{`{`, `{"v":9,"files":[]}`, `{"v":1,"files":[{"path":"x","fp":"zz","fp_len":1}]}`, `{"v":1,"files":[{"path":"x","fp":"1","fp_len":-1}]}`} {
		src := newFileSource(t, fileCfg(filepath.Join(dir, "*.log")), 10)
		if err := src.Seek(context.Background(), []byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "file: ") {
			t.Errorf("Seek(%s) = %v, want a file: error", bad, err)
		}
	}
	// An empty position is a fresh start.
	src := newFileSource(t, fileCfg(filepath.Join(dir, "*.log")), 10)
	if err := src.Seek(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestFileConfigYAML(t *testing.T) {
	c := NewFileConfig()
	err := yaml.UnmarshalWithOptions([]byte(`{paths: ["logs/*.log"], exclude: ["*.gz"], follow: true, start_at: end,
		max_line_bytes: 4096, glob_interval: 2s, poll_interval: 100ms, rotate_wait: 1m, gzip: "false"}`), c, yaml.DisallowUnknownField())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.Follow || c.StartAt != "end" || c.MaxLineBytes != 4096 || c.GlobInterval != 2*time.Second ||
		c.PollInterval != 100*time.Millisecond || c.RotateWait != time.Minute || c.Gzip != "false" {
		t.Fatalf("decoded %+v", c)
	}
	d := NewFileConfig("x")
	if d.StartAt != "beginning" || d.MaxLineBytes != 1<<20 || d.GlobInterval != time.Second ||
		d.PollInterval != 250*time.Millisecond || d.Gzip != "auto" || d.Follow {
		t.Fatalf("defaults %+v", d)
	}
	for _, bad := range []func(c *FileConfig){
		func(c *FileConfig) { c.Paths = nil },
		func(c *FileConfig) { c.Paths = []string{"[a"} },
		func(c *FileConfig) { c.Paths = []string{"a**/x"} },
		func(c *FileConfig) { c.Exclude = []string{"[a"} },
		func(c *FileConfig) { c.StartAt = "middle" },
		func(c *FileConfig) { c.Gzip = "maybe" },
		func(c *FileConfig) { c.MaxLineBytes = 0 },
		func(c *FileConfig) { c.PollInterval = 0 },
	} {
		c := NewFileConfig("logs/*.log")
		bad(c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
	if _, ok := pipeline.Default.Lookup(pipeline.KindSource, "file"); !ok {
		t.Fatal("file source is not registered")
	}
}

func TestMatchElems(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"**/*.log", "a.log", true},
		{"**/*.log", "x/y/a.log", true},
		{"a/**/b/*.log", "a/b/c.log", true},
		{"a/**/b/*.log", "a/x/y/b/c.log", true},
		{"a/**/b/*.log", "a/x/c.log", false},
		{"a/**", "a/x/y", true},
		{"*.log", "x/a.log", false},
	}
	for _, c := range cases {
		if got := matchElems(strings.Split(c.pat, "/"), strings.Split(c.name, "/")); got != c.want {
			t.Errorf("matchElems(%q, %q) = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
}

// chunkReader returns its data in reads of at most n bytes.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// FuzzFileLines checks the line splitter against a plain reference for
// any input, buffer size, read size, line limit and batch size: every line
// once, in order, as a record or (too long) a dead letter with its first
// bytes, at the right offset and line number.
func FuzzFileLines(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\nccc"), uint8(4), uint8(3), uint8(2), uint8(1))
	f.Add([]byte(strings.Repeat("x", 300)+"\nok\n"+strings.Repeat("y", 50)), uint8(16), uint8(7), uint8(10), uint8(3))
	f.Add([]byte("\r\r\n\n\r"), uint8(1), uint8(1), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, bufSize, readSize, maxLine, batch uint8) {
		bs, rs, ml, bn := int(bufSize)+1, int(readSize)+1, int(maxLine)+1, int(batch)+1
		lr := newLineReader("file", "f", "c", 0, time.Now, ml, bs)
		pool := bufferPool{size: bs}
		lr.acquire(&pool)
		r := &chunkReader{data: data, n: rs}
		var g got
		for range 10 * (len(data) + 2) {
			b := &pipeline.Batch{}
			eof, err := lr.read(r, b, bn, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Records) > bn {
				t.Fatalf("%d records in a batch of %d", len(b.Records), bn)
			}
			if eof && len(b.Records) < bn {
				lr.flushPartial(b)
			}
			g.recs = append(g.recs, b.Records...)
			g.dead = append(g.dead, b.Dead...)
			if eof && lr.buffered() == 0 {
				break
			}
			// Alternate releasing the buffer, as follow mode does between polls.
			lr.release(&pool)
			lr.acquire(&pool)
		}
		ri, di := 0, 0
		for _, w := range expectedLines(string(data)) {
			var r *pipeline.Record
			if len(w.value) > ml {
				if di >= len(g.dead) {
					t.Fatalf("missing dead letter for line %d", w.line)
				}
				r = g.dead[di].Record
				di++
				if keep := min(len(w.value), ml, deadLinePreview); string(r.Value) != w.value[:keep] {
					t.Fatalf("line %d: dead letter holds %q, want %q", w.line, r.Value, w.value[:keep])
				}
			} else {
				if ri >= len(g.recs) {
					t.Fatalf("missing record for line %d %q", w.line, w.value)
				}
				r = g.recs[ri]
				ri++
				if string(r.Value) != w.value {
					t.Fatalf("line %d: %q, want %q", w.line, r.Value, w.value)
				}
			}
			if r.Origin.Offset != w.off || r.Origin.Line != w.line {
				t.Fatalf("line %d at %+v, want offset %d", w.line, r.Origin, w.off)
			}
		}
		if ri != len(g.recs) || di != len(g.dead) {
			t.Fatalf("extra output: %d records (want %d), %d dead (want %d)", len(g.recs), ri, len(g.dead), di)
		}
		if lr.offset != int64(len(data)) {
			t.Fatalf("offset %d at the end of %d bytes", lr.offset, len(data))
		}
	})
}
