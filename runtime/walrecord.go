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
//	batch    version byte (3), varint read time (unix nanoseconds: when
//	         the source returned the batch, the wall clock of ingestion),
//	         uvarint record count, then per record: uvarint length, record
//	         (version 2, written before weir kept the read time, has no
//	         read time)
//
// The read time dates the batch's message ids for dedupe_window's age
// when the seen-id set is rebuilt from the WAL. A record's own time (its
// ingestion time unless the protocol carries a timestamp) is in the
// record, so a replayed record has the event time it had when it was
// first read: windows without event_time give the same result after a
// kill as without one.
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
	walRecordVersion  = 1
	walBatchVersionV2 = 2
	walBatchVersion   = 3
)

// encodeWALBatch appends one WAL entry holding recs, read at readAt.
func encodeWALBatch(dst []byte, recs []*pipeline.Record, readAt time.Time, scratch []byte) ([]byte, []byte) {
	dst = append(dst, walBatchVersion)
	dst = binary.AppendVarint(dst, readAt.UnixNano())
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for _, r := range recs {
		scratch = encodeWALRecord(scratch[:0], r)
		dst = appendUvarintBytes(dst, scratch)
	}
	return dst, scratch
}

// decodeWALBatch decodes an entry written by encodeWALBatch into records
// from pipeline.NewRecords, and the batch's read time (zero for a version
// 2 entry). data must not be reused afterwards: records alias it.
func decodeWALBatch(data []byte) ([]*pipeline.Record, time.Time, error) {
	if len(data) == 0 || (data[0] != walBatchVersion && data[0] != walBatchVersionV2) {
		return nil, time.Time{}, errBadWALRecord
	}
	d := walDecoder{b: data[1:]}
	var readAt time.Time
	if data[0] == walBatchVersion {
		readAt = time.Unix(0, d.varint()).UTC()
	}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return nil, time.Time{}, errBadWALRecord
	}
	recs := pipeline.NewRecords(int(n))
	for _, r := range recs {
		if err := decodeWALRecord(d.bytes(), r); err != nil || d.err != nil {
			return nil, time.Time{}, errBadWALRecord
		}
	}
	return recs, readAt, nil
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
