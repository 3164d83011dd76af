package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
)

// segmentBytes returns a well-formed segment 0 holding payloads.
func segmentBytes(payloads ...[]byte) []byte {
	h := encodeHeader(0)
	b := h[:]
	for i, p := range payloads {
		b = appendFrame(b, uint64(i), p)
	}
	return b
}

// FuzzReader feeds arbitrary bytes as the only segment of a log to the
// read-only entry points and to Open, Reader and Append. Nothing may
// panic; the read-only reader and a successful Open must agree on the
// records; Open may fail only with a *CorruptionError.
func FuzzReader(f *testing.F) {
	valid := segmentBytes([]byte("hello"), nil, []byte("a longer record with some bytes"), []byte{0, 1, 2})
	f.Add(valid)
	f.Add(valid[:len(valid)-2])
	f.Add(valid[:headerSize])
	f.Add(valid[:headerSize-5])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(valid), make([]byte, 64)...))
	huge := binary.LittleEndian.AppendUint32(bytes.Clone(valid), (MaxRecordSize-1)|frameTypeRec<<frameTypeShift)
	f.Add(append(huge, 0, 0, 0, 0))
	flipped := bytes.Clone(valid)
	flipped[headerSize+frameHeader] ^= 1
	f.Add(flipped)

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(segmentPath(dir, 0), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Stat(dir); err != nil && !isCorruption(err) {
			t.Fatalf("Stat: %v", err)
		}
		if err := Dump(io.Discard, dir, 0); err != nil && !isCorruption(err) {
			t.Fatalf("Dump: %v", err)
		}
		var dirRecs []rec
		var dirErr error
		if r, err := OpenReader(dir, 0); err != nil {
			t.Fatalf("OpenReader: %v", err)
		} else {
			dirRecs, dirErr = readAllLoose(r)
			r.Close()
		}
		if dirErr != nil && !isCorruption(dirErr) {
			t.Fatalf("OpenReader.Next: %v", dirErr)
		}

		l, err := Open(dir, Options{Sync: SyncNone})
		if err != nil {
			if !isCorruption(err) {
				t.Fatalf("Open: %v", err)
			}
			if dirErr == nil {
				t.Fatalf("Open found corruption (%v) that OpenReader did not", err)
			}
			return
		}
		if dirErr != nil {
			t.Fatalf("OpenReader found corruption (%v) that Open did not", dirErr)
		}
		r, err := l.NewReader(0)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := readAllLoose(r)
		r.Close()
		if err != nil {
			t.Fatalf("reading after a successful Open: %v", err)
		}
		if len(recs) != len(dirRecs) {
			t.Fatalf("Open+Reader read %d records, OpenReader %d", len(recs), len(dirRecs))
		}
		for i := range recs {
			if recs[i].index != uint64(i) || !bytes.Equal(recs[i].data, dirRecs[i].data) {
				t.Fatalf("record %d differs between Open+Reader and OpenReader", i)
			}
		}
		first, err := l.Append(context.Background(), []byte("appended"))
		if err != nil || first != uint64(len(recs)) {
			t.Fatalf("Append after Open = %d, %v; want %d, nil", first, err, len(recs))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = Open(dir, Options{Sync: SyncNone})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		if got := l.NextIndex(); got != first+1 {
			t.Fatalf("after reopen NextIndex = %d, want %d", got, first+1)
		}
	})
}

func isCorruption(err error) bool {
	var ce *CorruptionError
	return errors.As(err, &ce)
}
