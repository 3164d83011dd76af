package sources

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func newStdin(t testing.TB, r io.Reader, maxLine, batch int) pipeline.Source {
	t.Helper()
	c := NewStdinConfig()
	c.Reader = r
	if maxLine > 0 {
		c.MaxLineBytes = maxLine
	}
	src, err := c.NewSource(testBuild(t, batch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	return src
}

func TestStdinLinesAndEOF(t *testing.T) {
	var sb strings.Builder
	for range 3000 {
		sb.WriteString("some line\r\n")
	}
	sb.WriteString("\nlast")
	content := sb.String()
	src := newStdin(t, strings.NewReader(content), 0, 100)
	g := readToEOF(t, src, 100)
	checkRecords(t, g.recs, "stdin", expectedLines(content))
	if _, err := src.Read(context.Background(), &pipeline.Batch{}); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after the end: %v", err)
	}
	if _, ok := src.(pipeline.Positioned); ok {
		t.Fatal("stdin must not be Positioned: it cannot replay")
	}
}

func TestStdinLongLines(t *testing.T) {
	huge := strings.Repeat("h", 3<<20)
	content := "ok\n" + huge + "\nafter\n" + huge
	src := newStdin(t, strings.NewReader(content), 1000, 10)
	g := readToEOF(t, src, 10)
	equalStrings(t, "records", g.values(), []string{"ok", "after"})
	if len(g.dead) != 2 {
		t.Fatalf("got %d dead letters, want 2", len(g.dead))
	}
	for _, d := range g.dead {
		if d.Reason != "too_long" || len(d.Record.Value) != 1000 || d.Record.Origin.Name != "stdin" || !strings.HasPrefix(d.Error, "stdin: ") {
			t.Fatalf("dead letter: reason %q, %d bytes, origin %+v, error %q", d.Reason, len(d.Record.Value), d.Record.Origin, d.Error)
		}
	}
	if o := g.dead[1].Record.Origin; o.Line != 4 || o.Offset != int64(3+len(huge)+1+6) {
		t.Fatalf("second long line at %+v", o)
	}
}

// TestStdinPipeDeliversPromptly: a line written to a pipe that stays open
// is delivered without waiting for more input, and a quiet pipe gives the
// runtime control back with empty batches.
func TestStdinPipeDeliversPromptly(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	src := newStdin(t, pr, 0, 100)
	go func() { _, _ = pw.Write([]byte("hello\nwor")) }()
	var g got
	collectUntil(t, src, &g, hasValue("hello"))

	b := &pipeline.Batch{}
	if _, err := src.Read(context.Background(), b); err != nil || len(b.Records) != 0 {
		t.Fatalf("quiet pipe: %v, %d records", err, len(b.Records))
	}
	go func() { _, _ = pw.Write([]byte("ld\n")); _ = pw.Close() }()
	for {
		b := &pipeline.Batch{}
		_, err := src.Read(context.Background(), b)
		g.recs = append(g.recs, b.Records...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	equalStrings(t, "values", g.values(), []string{"hello", "world"})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src2 := newStdin(t, strings.NewReader(""), 0, 10)
	if _, err := src2.Read(ctx, &pipeline.Batch{}); err != context.Canceled {
		t.Fatalf("cancelled Read: %v", err)
	}
}

// TestStdinReadError: a failing input stops the source with its error,
// after the lines read before it.
func TestStdinReadError(t *testing.T) {
	boom := errors.New("boom")
	src := newStdin(t, io.MultiReader(strings.NewReader("a\nb\n"), errReader{boom}), 0, 10)
	var g got
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b := &pipeline.Batch{}
		_, err := src.Read(context.Background(), b)
		g.recs = append(g.recs, b.Records...)
		if err != nil {
			if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "stdin: ") {
				t.Fatalf("error %v", err)
			}
			equalStrings(t, "before the error", g.values(), []string{"a", "b"})
			return
		}
	}
	t.Fatal("no error")
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestStdinConfig(t *testing.T) {
	c := NewStdinConfig()
	if c.MaxLineBytes != 1<<20 || c.Validate() != nil {
		t.Fatalf("defaults %+v", c)
	}
	c.MaxLineBytes = 0
	if c.Validate() == nil {
		t.Fatal("max_line_bytes 0 accepted")
	}
	if _, ok := pipeline.Default.Lookup(pipeline.KindSource, "stdin"); !ok {
		t.Fatal("stdin is not registered")
	}
}
