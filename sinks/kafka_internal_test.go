package sinks

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func sameKafkaRecord(a, b *kgo.Record) bool {
	return a.Topic == b.Topic && bytes.Equal(a.Value, b.Value) && (a.Key == nil) == (b.Key == nil) &&
		bytes.Equal(a.Key, b.Key) && a.Timestamp.Equal(b.Timestamp) &&
		slices.EqualFunc(a.Headers, b.Headers, func(x, y kgo.RecordHeader) bool {
			return x.Key == y.Key && bytes.Equal(x.Value, y.Value)
		})
}

func TestKafkaStagingEntryRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 300) // lengths over one varint byte
	recs := []*kgo.Record{
		{Topic: "t", Value: []byte(`{"a":1}`)},
		{Topic: "logs.errors-1", Key: []byte{}, Value: nil, Timestamp: time.UnixMilli(1_700_000_000_123)},
		{Topic: "t", Key: big, Value: big, Headers: []kgo.RecordHeader{{Key: "h", Value: big}, {Key: "", Value: nil}}},
	}
	var file []byte
	for _, r := range recs {
		file = appendKafkaEntry(file, r)
	}
	rd := bufio.NewReader(bytes.NewReader(file))
	for i, want := range recs {
		got, err := readKafkaEntry(rd, len(file))
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if !sameKafkaRecord(got, want) {
			t.Fatalf("entry %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := readKafkaEntry(rd, len(file)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after the last entry: %v, want io.ErrUnexpectedEOF", err)
	}
	// Every truncation of the file is an error, never a panic or a short
	// record taken for a whole one.
	for cut := 1; cut < len(file); cut++ {
		rd := bufio.NewReader(bytes.NewReader(file[:cut]))
		n := 0
		var err error
		for err == nil {
			_, err = readKafkaEntry(rd, len(file))
			n++
		}
		if n > len(recs) {
			t.Fatalf("cut at %d: read %d entries of %d", cut, n-1, len(recs))
		}
	}
}

// FuzzKafkaStagingEntry: decoding arbitrary bytes never panics, and what
// decodes re-encodes to the same entry.
func FuzzKafkaStagingEntry(f *testing.F) {
	f.Add(appendKafkaEntry(nil, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}, Timestamp: time.UnixMilli(5)}))
	f.Add([]byte{0})
	f.Add([]byte{5, 1, 't', 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return
		}
		r, err := decodeKafkaEntry(data[k : k+int(n)])
		if err != nil {
			return
		}
		again, err := readKafkaEntry(bufio.NewReader(bytes.NewReader(appendKafkaEntry(nil, r))), len(data)+binary.MaxVarintLen64)
		if err != nil || !sameKafkaRecord(r, again) {
			t.Fatalf("re-encoded entry differs: %v", err)
		}
	})
}
