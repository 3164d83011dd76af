package sinks

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/weirhq/weir/pipeline"
)

// decompress reads a whole compressed file (every member or frame).
func decompress(t *testing.T, kind, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader
	switch kind {
	case CompressionGzip:
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = zr
	case CompressionZstd:
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(out)
}

func compressed(kind string) func(*FileConfig) {
	return func(c *FileConfig) { c.Compression = kind }
}

// Under exactly_once a compressed file holds committed members only, one
// per checkpoint, and decompresses to what an uncompressed sink writes,
// across a crash between pre-commit and commit and a recovery; files
// closed by max_open_files in between get a member per stretch.
func TestFileSinkCompressedExactlyOnce(t *testing.T) {
	for _, kind := range []string{CompressionGzip, CompressionZstd} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "{{ day }}.jsonl.z")
			mutate := func(c *FileConfig) { c.Compression = kind; c.MaxOpenFiles = 1 } // d0 and d1 take turns
			s := newFileSink(t, dir, pipeline.ExactlyOnce, path, mutate)
			if err := s.Recover(ctx, nil); err != nil {
				t.Fatal(err)
			}
			_ = s.Write(ctx, batchOf(0, 10))
			tok1, err := s.PreCommit(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx, tok1); err != nil {
				t.Fatal(err)
			}
			_ = s.Write(ctx, batchOf(10, 300))
			tok2, err := s.PreCommit(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Write(ctx, batchOf(300, 310)) // never pre-committed
			s.Close(ctx)                        // crash before commit 2

			r := newFileSink(t, dir, pipeline.ExactlyOnce, path, mutate)
			if err := r.Recover(ctx, tok2); err != nil {
				t.Fatal(err)
			}
			_ = r.Write(ctx, batchOf(300, 320))
			tok3, _ := r.PreCommit(ctx, 3)
			if err := r.Commit(ctx, tok3); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(ctx, tok3); err != nil { // idempotent
				t.Fatal(err)
			}
			var want [2]bytes.Buffer
			for i := range 320 {
				want[i%2].WriteString(lines(i, i+1))
			}
			for d := range 2 {
				name := filepath.Join(dir, []string{"d0", "d1"}[d]+".jsonl.z")
				if got := decompress(t, kind, name); got != want[d].String() {
					t.Errorf("%s decompresses to %d bytes, want %d:\n%.200s", name, len(got), want[d].Len(), got)
				}
			}
		})
	}
}

// Under at_least_once a crash that tears the last member is repaired: a
// file cut back to its flushed length is whole, and one not in the
// flushed record loses only its incomplete last member.
func TestFileSinkCompressedAtLeastOnceCutsATornMember(t *testing.T) {
	for _, kind := range []string{CompressionGzip, CompressionZstd} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			out := filepath.Join(dir, "out.jsonl.z")
			s := newFileSink(t, dir, pipeline.AtLeastOnce, out, compressed(kind))
			_ = s.Write(ctx, batchOf(0, 10))
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			first, _ := os.Stat(out) // one member
			_ = s.Write(ctx, batchOf(10, 20))
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			flushed, _ := os.ReadFile(out)
			_ = s.Write(ctx, batchOf(20, 2000)) // past the buffer: part of a member reaches the file
			s.Close(ctx)
			f, _ := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0o644)
			f.Write([]byte{0x1f, 0x8b, 0x28, 0xb5, 0x2f}) // a torn header, for either kind
			f.Close()

			r := newFileSink(t, dir, pipeline.AtLeastOnce, out, compressed(kind))
			if got := decompress(t, kind, out); got != lines(0, 20) {
				t.Fatalf("after restart: %d bytes decompressed, want the %d flushed", len(got), len(lines(0, 20)))
			}
			_ = r.Write(ctx, batchOf(20, 30))
			_ = r.Flush(ctx)
			if got := decompress(t, kind, out); got != lines(0, 30) {
				t.Fatalf("after more writes: %q", got)
			}

			// A file the record does not know: complete members stay, the
			// torn one goes.
			lone := filepath.Join(dir, "lone.jsonl.z")
			os.WriteFile(lone, append(append([]byte(nil), flushed...), flushed[:first.Size()-5]...), 0o644)
			l := newFileSink(t, dir, pipeline.AtLeastOnce, lone, compressed(kind))
			_ = l.Write(ctx, batchOf(100, 101))
			_ = l.Flush(ctx)
			if got, want := decompress(t, kind, lone), lines(0, 20)+lines(100, 101); got != want {
				t.Fatalf("a torn file not in the record: %q, want %q", got, want)
			}
		})
	}
}

func TestFileSinkCompressionValidate(t *testing.T) {
	tpl, _ := pipeline.CompileTemplate("o.jsonl", pipeline.Pos{})
	c := &FileConfig{Path: tpl, MaxOpenFiles: 1, BufferBytes: 4096, Compression: "lz4"}
	if err := c.Validate(); err == nil || err.Error() != `file: compression: "lz4" is not one of none, gzip, zstd` {
		t.Fatalf("got %v", err)
	}
}
