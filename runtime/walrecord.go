package runtime

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// The ingest WAL stores each batch of a non-replayable source as one WAL
// entry, so a batch is durable whole or not at all (the WAL's CRC covers the
// entry): a torn write can never keep half a batch that the source, never
// acknowledged, would send again in full.
//
//	batch    version byte (2), uvarint record count, then per record:
//	         uvarint length, record
//
// and each record:
//
//	version  byte (1)
//	time     varint (unix nanoseconds; 0 = zero time)
//	key      uvarint length, bytes
//	value    uvarint length, bytes
//	headers  uvarint count, then per header: key (uvarint length, bytes), value (uvarint length, bytes)
//	origin   name (uvarint length, bytes), offset varint, line varint, id (uvarint length, bytes)
const (
	walRecordVersion = 1
	walBatchVersion  = 2
)

// encodeWALBatch appends one WAL entry holding recs.
func encodeWALBatch(dst []byte, recs []*pipeline.Record, scratch []byte) ([]byte, []byte) {
	dst = append(dst, walBatchVersion)
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for _, r := range recs {
		scratch = encodeWALRecord(scratch[:0], r)
		dst = appendUvarintBytes(dst, scratch)
	}
	return dst, scratch
}

// decodeWALBatch decodes an entry written by encodeWALBatch into records
// from pipeline.NewRecords. data must not be reused afterwards: records
// alias it.
func decodeWALBatch(data []byte) ([]*pipeline.Record, error) {
	if len(data) == 0 || data[0] != walBatchVersion {
		return nil, errBadWALRecord
	}
	d := walDecoder{b: data[1:]}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return nil, errBadWALRecord
	}
	recs := pipeline.NewRecords(int(n))
	for _, r := range recs {
		if err := decodeWALRecord(d.bytes(), r); err != nil || d.err != nil {
			return nil, errBadWALRecord
		}
	}
	return recs, nil
}

var errBadWALRecord = errors.New("runtime: malformed ingest WAL record")

func appendUvarintBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendUvarintString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// encodeWALRecord appends r's replayable parts (not its parsed fields: a
// replayed record is parsed again by the same operators).
func encodeWALRecord(dst []byte, r *pipeline.Record) []byte {
	dst = append(dst, walRecordVersion)
	var ns int64
	if !r.Time.IsZero() {
		ns = r.Time.UnixNano()
	}
	dst = binary.AppendVarint(dst, ns)
	dst = appendUvarintBytes(dst, r.Key)
	dst = appendUvarintBytes(dst, r.Value)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = appendUvarintString(dst, h.Key)
		dst = appendUvarintBytes(dst, h.Value)
	}
	dst = appendUvarintString(dst, r.Origin.Name)
	dst = binary.AppendVarint(dst, r.Origin.Offset)
	dst = binary.AppendVarint(dst, r.Origin.Line)
	return appendUvarintString(dst, r.Origin.ID)
}

type walDecoder struct {
	b   []byte
	err error
}

func (d *walDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadWALRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *walDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadWALRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *walDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadWALRecord
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

// decodeWALRecord fills r from an entry. data must not be reused afterwards:
// the record's Value aliases it.
func decodeWALRecord(data []byte, r *pipeline.Record) error {
	if len(data) == 0 || data[0] != walRecordVersion {
		return errBadWALRecord
	}
	d := walDecoder{b: data[1:]}
	if ns := d.varint(); ns != 0 {
		r.Time = time.Unix(0, ns).UTC()
	}
	r.Key = d.bytes()
	r.Value = d.bytes()
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		r.Headers = make([]pipeline.Header, 0, n)
		for range n {
			k := d.bytes()
			v := d.bytes()
			r.Headers = append(r.Headers, pipeline.Header{Key: string(k), Value: v})
		}
	} else if n > uint64(len(d.b)) {
		return errBadWALRecord
	}
	r.Origin.Name = string(d.bytes())
	r.Origin.Offset = d.varint()
	r.Origin.Line = d.varint()
	r.Origin.ID = string(d.bytes())
	if len(r.Key) == 0 {
		r.Key = nil
	}
	return d.err
}
