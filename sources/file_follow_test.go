package sources

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// collectUntil reads a follow-mode source until done says the records so
// far are enough, failing after a generous deadline.
func collectUntil(t testing.TB, src pipeline.Source, g *got, done func(*got) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !done(g) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting; have %d records, last %q", len(g.recs), clip(lastValues(g, 5)))
		}
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); err != nil {
			t.Fatalf("Read: %v", err)
		}
		g.recs = append(g.recs, b.Records...)
		g.dead = append(g.dead, b.Dead...)
	}
}

// readOnce calls Read once.
func readOnce(t testing.TB, src pipeline.Source, g *got) {
	t.Helper()
	b := &pipeline.Batch{}
	if _, err := src.Read(context.Background(), b); err != nil {
		t.Fatalf("Read: %v", err)
	}
	g.recs = append(g.recs, b.Records...)
	g.dead = append(g.dead, b.Dead...)
}

func lastValues(g *got, n int) []string {
	v := g.values()
	return v[max(0, len(v)-n):]
}

func hasValue(v string) func(*got) bool {
	return func(g *got) bool {
		for _, r := range g.recs {
			if string(r.Value) == v {
				return true
			}
		}
		return false
	}
}

// numbered checks that records are "n=<number>" lines, every number in
// 1..n exactly once, and in increasing order within each file. A file is
// its split (its identity): under rotation two files may carry one name
// (app.log.1.gz of two rotations), and be read in turns.
func numbered(t testing.TB, g *got, n int) {
	t.Helper()
	seen := make([]int, n+1)
	last := map[string]int{}
	for _, r := range g.recs {
		k, err := strconv.Atoi(strings.TrimPrefix(string(r.Value), "n="))
		if err != nil || k < 1 || k > n {
			t.Fatalf("unexpected record %q from %s", r.Value, r.Origin.Name)
		}
		seen[k]++
		file := r.Split
		if file == "" {
			file = r.Origin.Name
		}
		if k <= last[file] {
			t.Fatalf("%s (file %s): %d after %d", r.Origin.Name, file, k, last[file])
		}
		last[file] = k
	}
	for k := 1; k <= n; k++ {
		if seen[k] != 1 {
			t.Fatalf("line n=%d seen %d times", k, seen[k])
		}
	}
}

func countUpTo(n int) func(*got) bool {
	return func(g *got) bool {
		for _, r := range g.recs {
			if string(r.Value) == fmt.Sprintf("n=%d", n) {
				return true
			}
		}
		return false
	}
}

func followCfg(paths ...string) *FileConfig {
	c := fileCfg(paths...)
	c.Follow = true
	return c
}

func TestFileFollowAppendPartialAndNewFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.log")
	writeFile(t, a, "a1\n")
	src := newFileSource(t, followCfg(filepath.Join(dir, "*.log"), filepath.Join(dir, "*.gz")), 100)
	var g got
	collectUntil(t, src, &g, hasValue("a1"))

	appendFile(t, a, "a2\na3 part")
	collectUntil(t, src, &g, hasValue("a2"))
	// The incomplete line is held, however many polls pass.
	for range 5 {
		b := &pipeline.Batch{}
		if _, err := src.Read(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if len(b.Records) != 0 {
			t.Fatalf("got %q before its newline", b.Records[0].Value)
		}
	}
	appendFile(t, a, "ial\n")
	collectUntil(t, src, &g, hasValue("a3 partial"))

	b := filepath.Join(dir, "b.log")
	writeFile(t, b, "b1\nb2\n")
	if err := os.WriteFile(filepath.Join(dir, "c.gz"), gzipBytes(t, "c1\nc2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	collectUntil(t, src, &g, func(g *got) bool { return hasValue("b2")(g) && hasValue("c2")(g) })
	equalStrings(t, "a.log", valuesFrom(&g, a), []string{"a1", "a2", "a3 partial"})
	equalStrings(t, "b.log", valuesFrom(&g, b), []string{"b1", "b2"})
	checkRecords(t, recsFrom(&g, b), b, expectedLines("b1\nb2\n"))
	checkRecords(t, recsFrom(&g, a), a, expectedLines("a1\na2\na3 partial\n"))
	if len(g.recs) != 7 {
		t.Fatalf("got %q", g.values())
	}
}

func recsFrom(g *got, name string) []*pipeline.Record {
	var out []*pipeline.Record
	for _, r := range g.recs {
		if r.Origin.Name == name {
			out = append(out, r)
		}
	}
	return out
}

func valuesFrom(g *got, name string) []string {
	return (&got{recs: recsFrom(g, name)}).values()
}

func TestFileFollowIdleAndCancel(t *testing.T) {
	dir := t.TempDir()
	src := newFileSource(t, followCfg(filepath.Join(dir, "*.log")), 10)
	b := &pipeline.Batch{}
	start := time.Now()
	if _, err := src.Read(context.Background(), b); err != nil || len(b.Records) != 0 {
		t.Fatalf("idle Read: %v, %d records", err, len(b.Records))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("idle Read took %v; it must give control back", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Read(ctx, b); err != context.Canceled {
		t.Fatalf("Read with a cancelled context: %v", err)
	}
}

// TestFileFollowRotateRename rotates app.log by rename while a writer is
// writing and the source is reading. The writer keeps writing to the
// renamed file for a while (it has not reopened yet), then switches to a
// new app.log.
func TestFileFollowRotateRename(t *testing.T) {
	for _, tc := range []struct {
		name string
		glob string
	}{
		{"rotated name not matched", "app.log"},
		{"rotated name matched", "app.log*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			const total = 3000
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			src := newFileSource(t, followCfg(filepath.Join(dir, tc.glob)), 64)
			var g got
			readOnce(t, src, &g) // the first scan is done

			writerDone := make(chan error, 1)
			go func() {
				defer func() { _ = f.Close() }()
				for i := 1; i <= total; i++ {
					if i == 1000 {
						if err := os.Rename(p, p+".1"); err != nil {
							writerDone <- err
							return
						}
					}
					if i == 1100 { // the application reopens its log
						_ = f.Close()
						if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
							writerDone <- err
							return
						}
					}
					if _, err := fmt.Fprintf(f, "n=%d\n", i); err != nil {
						writerDone <- err
						return
					}
					if i%100 == 0 {
						time.Sleep(time.Millisecond) // let the reader interleave
					}
				}
				writerDone <- nil
			}()
			collectUntil(t, src, &g, countUpTo(total))
			if err := <-writerDone; err != nil {
				t.Fatal(err)
			}
			// Lines 1000..1099 went to the renamed file after the rename:
			// give the source time to pick up any stragglers, then check.
			collectUntil(t, src, &g, func(g *got) bool { return len(g.recs) >= total })
			numbered(t, &g, total)
			for _, r := range g.recs {
				// Lines of the rotated file carry the name it was last
				// seen under; the new file's are all from app.log.
				k, _ := strconv.Atoi(strings.TrimPrefix(string(r.Value), "n="))
				if k >= 1100 && r.Origin.Name != p {
					t.Fatalf("n=%d read from %s, want %s", k, r.Origin.Name, p)
				}
			}
		})
	}
}

// TestFileFollowCopyTruncate copies and truncates app.log while the
// application keeps writing to it through its O_APPEND descriptor. The
// copy is made after the reader consumed everything (what copytruncate
// loses otherwise is inherent to it), and what is written after the
// truncation is shorter than before, so the truncation is visible.
func TestFileFollowCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := fmt.Fprintf(f, "n=%d\n", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	src := newFileSource(t, followCfg(filepath.Join(dir, "*.log")), 50)
	var g got
	write(1, 300)
	collectUntil(t, src, &g, countUpTo(300))

	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p+".1", string(data)) // the copy (not matched by *.log)
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	write(301, 320)
	collectUntil(t, src, &g, countUpTo(320))
	write(321, 1000)
	collectUntil(t, src, &g, countUpTo(1000))
	numbered(t, &g, 1000)
	for _, r := range g.recs {
		if string(r.Value) == "n=301" && (r.Origin.Offset != 0 || r.Origin.Line != 1) {
			t.Fatalf("first line after truncation at %+v", r.Origin)
		}
	}
}

func TestFileFollowStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.log")
	writeFile(t, a, "old1\nold2\npartial")
	c := followCfg(filepath.Join(dir, "*.log"))
	c.StartAt = "end"
	src := newFileSource(t, c, 10)
	var g got
	readOnce(t, src, &g) // the first scan is done
	appendFile(t, a, " rest\nnew1\n")
	b := filepath.Join(dir, "b.log")
	writeFile(t, b, "b1\n") // appears after the start: read from its beginning
	collectUntil(t, src, &g, func(g *got) bool { return hasValue("new1")(g) && hasValue("b1")(g) })
	equalStrings(t, "a.log", valuesFrom(&g, a), []string{"new1"})
	equalStrings(t, "b.log", valuesFrom(&g, b), []string{"b1"})
	if o := recsFrom(&g, a)[0].Origin; o.Offset != int64(len("old1\nold2\npartial rest\n")) || o.Line != 0 {
		t.Fatalf("new1 at %+v; want its offset and no line number", o)
	}
}

// TestFileFollowRestartAfterRotation: the source stops, app.log is rotated
// and written to while it is down; the restarted source finishes the
// rotated file, reads the new one, and then forgets the rotated file.
func TestFileFollowRestartAfterRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "n=1\nn=2\nn=3\n")
	c := followCfg(p)
	src := newFileSource(t, c, 2)
	var g got
	collectUntil(t, src, &g, countUpTo(2))
	pos, _ := src.Position()
	_ = src.Close(context.Background())
	g.recs = g.recs[:2] // what the checkpoint covers

	appendFile(t, p, "n=4\n")
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "n=5\nn=6\n")

	src2 := newFileSource(t, c, 2)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	collectUntil(t, src2, &g, func(g *got) bool { return len(g.recs) >= 6 })
	numbered(t, &g, 6)
	// After rotate_wait the rotated file is closed and forgotten.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pos, _ := src2.Position()
		if !strings.Contains(string(pos), "app.log.1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated file still tracked: %s", pos)
		}
		if _, err := src2.Read(context.Background(), &pipeline.Batch{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFileFollowPositionAfterBufferedLines: a file shorter than the read
// buffer is read into memory at once, and batches smaller than it take
// their lines from there without reading the file again. The position
// after each batch must still be the offset after its last line: it was
// the offset after the first batch for as long as the file did not grow,
// so every restart read those lines again (under exactly_once, doubled
// output; found by the generative crash test, seed 582285292).
func TestFileFollowPositionAfterBufferedLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	var lines strings.Builder
	for n := 1; n <= 10; n++ {
		fmt.Fprintf(&lines, "n=%d\n", n)
	}
	writeFile(t, p, lines.String())
	c := followCfg(p)
	src := newFileSource(t, c, 3)
	var g got
	collectUntil(t, src, &g, countUpTo(3))
	first, _ := src.Position()
	first = append([]byte(nil), first...)
	collectUntil(t, src, &g, countUpTo(6))
	pos, _ := src.Position()
	if string(pos) == string(first) {
		t.Fatalf("position after 6 lines is the one after 3: %s", pos)
	}
	_ = src.Close(context.Background())
	g.recs = g.recs[:6] // what the checkpoint covers

	src2 := newFileSource(t, c, 3)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	collectUntil(t, src2, &g, func(g *got) bool { return len(g.recs) >= 10 })
	numbered(t, &g, 10)
}

// TestFileFollowRenamedBetweenSeekAndOpen: the file a checkpoint names is
// found at its path by Seek, then rotated by rename (a new file at the
// path) before the first Read opens it. Opening the path gives the new
// file; the checkpointed one must not be forgotten for that, or the next
// scan finds it under its new name as a new file and reads it again from
// its start (doubled under exactly_once; found by the generative crash
// test, seed 665433668).
func TestFileFollowRenamedBetweenSeekAndOpen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "n=1\nn=2\nn=3\n")
	c := followCfg(filepath.Join(dir, "app.log*"))
	src := newFileSource(t, c, 2)
	var g got
	collectUntil(t, src, &g, countUpTo(2))
	pos, _ := src.Position()
	_ = src.Close(context.Background())
	g.recs = g.recs[:2] // what the checkpoint covers

	src2 := newFileSource(t, c, 2)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	appendFile(t, p, "n=4\n")
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "n=5\nn=6\n")
	collectUntil(t, src2, &g, func(g *got) bool { return len(g.recs) >= 6 })
	for range 5 { // anything read twice would come now
		readOnce(t, src2, &g)
	}
	numbered(t, &g, 6)
}

// TestFileFollowSkipAcrossRestart: a too-long line still being written is
// dead-lettered at once; a restart from the position taken then discards
// the rest of that line instead of reading it as a line of its own.
func TestFileFollowSkipAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "short\n"+strings.Repeat("x", 100))
	c := followCfg(p)
	c.MaxLineBytes = 10
	src := newFileSource(t, c, 10)
	var g got
	collectUntil(t, src, &g, func(g *got) bool { return len(g.dead) > 0 })
	equalStrings(t, "before", g.values(), []string{"short"})
	if d := g.dead[0]; d.Reason != "too_long" || len(d.Record.Value) != 10 || d.Record.Origin.Offset != 6 || d.Record.Origin.Line != 2 {
		t.Fatalf("dead letter %+v at %+v", d, d.Record.Origin)
	}
	pos, _ := src.Position()
	_ = src.Close(context.Background())

	appendFile(t, p, "yyyy\nafter\n")
	src2 := newFileSource(t, c, 10)
	if err := src2.Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	var g2 got
	collectUntil(t, src2, &g2, hasValue("after"))
	equalStrings(t, "after restart", g2.values(), []string{"after"})
	if o := g2.recs[0].Origin; o.Line != 3 || o.Offset != 6+100+5 {
		t.Fatalf("after at %+v", o)
	}
	if len(g2.dead) != 0 {
		t.Fatalf("the long line was dead-lettered again: %+v", g2.dead)
	}
}

// TestFileFollowRewrittenInPlace: a file truncated and rewritten past the
// old offset between two looks is recognised by its new head and read
// again from the start. Polls here happen only right after scans, so the
// scan's fingerprint check always sees the rewrite first.
func TestFileFollowRewrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, "aaaa\nbbbb\n")
	c := followCfg(p)
	c.PollInterval = time.Hour
	src := newFileSource(t, c, 10)
	var g got
	collectUntil(t, src, &g, hasValue("bbbb"))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0) // same inode
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("XXXXXXXXXXXX\nYYYY\nZZZZ\n")
	_ = f.Close()
	collectUntil(t, src, &g, hasValue("ZZZZ"))
	equalStrings(t, "values", g.values(), []string{"aaaa", "bbbb", "XXXXXXXXXXXX", "YYYY", "ZZZZ"})
}

// TestFileFollowGzipStillBeingWritten: a compressed file that appears cut
// short (its writer is not done) is read as far as it goes, then again
// from there once it has grown; a complete stream is not tailed.
func TestFileFollowGzipStillBeingWritten(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "old.log.gz")
	var sb strings.Builder
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&sb, "n=%d\n", i)
	}
	full := gzipBytes(t, sb.String())
	if err := os.WriteFile(p, full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	src := newFileSource(t, followCfg(filepath.Join(dir, "*.gz")), 1000)
	var g got
	collectUntil(t, src, &g, func(g *got) bool { return len(g.recs) > 0 })
	if err := os.WriteFile(p, full, 0o644); err != nil { // same inode, grown
		t.Fatal(err)
	}
	collectUntil(t, src, &g, countUpTo(20000))
	numbered(t, &g, 20000)
	if len(g.dead) != 0 {
		t.Fatalf("dead letters: %+v", g.dead)
	}
	// Once its end is seen, a complete stream is done: never read again.
	pos, _ := src.Position()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(string(pos), `"done":true`); pos, _ = src.Position() {
		if time.Now().After(deadline) {
			t.Fatalf("a complete gzip stream is not done: %s", pos)
		}
		readOnce(t, src, &g)
	}
	numbered(t, &g, 20000)
}

// TestFileFollowNewFileNotOrphan: a file found by a scan matches the globs;
// it is not taken for a rotated one (an orphan, finished and forgotten
// after rotate_wait) until the next scan, which would find it again as new
// and read it twice when rotate_wait is shorter than glob_interval.
func TestFileFollowNewFileNotOrphan(t *testing.T) {
	dir := t.TempDir()
	c := followCfg(filepath.Join(dir, "*.log"))
	c.GlobInterval = 50 * time.Millisecond
	c.RotateWait = time.Millisecond
	src := newFileSource(t, c, 100)
	var g got
	readOnce(t, src, &g) // the first scan is done
	b := filepath.Join(dir, "b.log")
	writeFile(t, b, "n=1\nn=2\n")
	collectUntil(t, src, &g, countUpTo(2))
	for range 3 { // a few more scans
		last := src.nextGlob
		for src.nextGlob == last {
			readOnce(t, src, &g)
		}
	}
	numbered(t, &g, 2)
}
