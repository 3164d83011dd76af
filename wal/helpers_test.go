package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// rec is a record read back from a log.
type rec struct {
	index uint64
	data  []byte
}

// payload returns deterministic, index-dependent contents of the given size.
func payload(i uint64, size int) []byte {
	b := make([]byte, size)
	seed := fmt.Appendf(nil, "record-%d:", i)
	for j := range b {
		b[j] = seed[j%len(seed)] ^ byte(j/len(seed))
	}
	return b
}

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

func mustClose(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// appendEach appends each payload with its own Append call and checks that
// the indexes are consecutive from NextIndex.
func appendEach(t testing.TB, l *Log, payloads [][]byte) {
	t.Helper()
	for _, p := range payloads {
		want := l.NextIndex()
		got, err := l.Append(context.Background(), p)
		if err != nil {
			t.Fatalf("Append(%d bytes): %v", len(p), err)
		}
		if got != want {
			t.Fatalf("Append returned index %d, want %d", got, want)
		}
	}
}

// drain reads r to io.EOF, copying each record.
func drain(t testing.TB, r *Reader) []rec {
	t.Helper()
	var out []rec
	for {
		i, data, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Reader.Next after %d records: %v", len(out), err)
		}
		out = append(out, rec{i, bytes.Clone(data)})
	}
}

// readFrom reads every durable record of l from index from.
func readFrom(t testing.TB, l *Log, from uint64) []rec {
	t.Helper()
	r, err := l.NewReader(from)
	if err != nil {
		t.Fatalf("NewReader(%d): %v", from, err)
	}
	defer r.Close()
	return drain(t, r)
}

// checkRecords checks that got holds exactly want[from:], with indexes
// from on.
func checkRecords(t testing.TB, got []rec, want [][]byte, from uint64) {
	t.Helper()
	if len(got) != len(want)-int(from) {
		t.Fatalf("read %d records from %d, want %d", len(got), from, len(want)-int(from))
	}
	for k, r := range got {
		wi := from + uint64(k)
		if r.index != wi {
			t.Fatalf("record %d: got index %d, want %d", k, r.index, wi)
		}
		if !bytes.Equal(r.data, want[wi]) {
			t.Fatalf("record %d: got %d bytes %q, want %d bytes %q", wi, len(r.data), trunc(r.data), len(want[wi]), trunc(want[wi]))
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func segmentsOf(t testing.TB, dir string) []uint64 {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// frameEnds returns, for records written one after another into a segment
// starting at offset headerSize, the offset just past each frame.
func frameEnds(payloads [][]byte) []int64 {
	ends := make([]int64, len(payloads))
	off := int64(headerSize)
	for i, p := range payloads {
		off += int64(frameHeader + len(p))
		ends[i] = off
	}
	return ends
}

// asCorruption returns err as a *CorruptionError, failing the test if it
// is not one.
func asCorruption(t testing.TB, err error) *CorruptionError {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v, want a *CorruptionError", err)
	}
	return ce
}
