package pipeline

import (
	"time"
	"unsafe"
)

// Header is one key/value pair of record metadata (a Kafka header, an AMQP
// header, an MQTT user property).
type Header struct {
	Key   string
	Value []byte
}

// Origin says where a record came from: a file path and byte offset, a
// topic/partition and offset, a queue and delivery tag. It is carried into
// dead-letter output so a bad record can be found at its source.
type Origin struct {
	Name   string `json:"name,omitempty"` // file path, "topic/partition", queue name
	Offset int64  `json:"offset"`         // byte offset, message offset, WAL index
	Line   int64  `json:"line,omitempty"` // 1-based line number where the source knows it
	ID     string `json:"id,omitempty"`   // protocol message id where one exists
}

// Record is one event flowing through a pipeline.
//
// Value holds the raw bytes as received; it is owned by the record and never
// mutated after the source hands the record on, so field values that alias it
// stay valid for the record's lifetime. The structured view (Fields) is
// parsed at most once, by a parse operator or on first use, and then shared
// by every later operator: operators never re-encode to bytes.
//
// A Record is not safe for concurrent use; a stage owns the records of the
// batch it is processing.
type Record struct {
	Key     []byte
	Value   []byte
	Headers []Header
	// Time is the record's event time as the source knows it (a Kafka
	// timestamp, a log line's receive time). Operators that need event time
	// usually compute it from a field with an expression instead.
	Time time.Time
	// Source is the index of the source, within its pipeline, that produced
	// the record; operators use it to keep per-input watermarks.
	Source int
	// Split is the part of its source the record came from, for sources
	// that read several in parallel: "topic/partition" for Kafka, the
	// file's identity for files. Empty when the source is one split.
	// Event-time operators keep one watermark per (Source, Split); see
	// SplitSource.
	Split string
	// Origin is where the record came from, for dead-letter output.
	Origin Origin

	fields Fields
	parsed bool // fields hold the structured view
	// lineView: the structured view was made from the raw line (a single
	// "message" field) by reading it, not by a parser. While that field is
	// unchanged and alone, the record is still written as its raw bytes.
	lineView bool
}

// Parsed reports whether the record has a structured view. A record that was
// never parsed is written by sinks as its raw Value.
func (r *Record) Parsed() bool { return r.parsed }

// Fields returns the structured view. A record that no parser has touched
// gets one field, "message", holding Value as a string, so expressions can
// work on raw lines (`message contains "ERROR"`).
func (r *Record) Fields() *Fields {
	if !r.parsed {
		r.fields.Reset()
		r.fields.Set("message", bytesToString(r.Value))
		r.parsed, r.lineView = true, true
	}
	return &r.fields
}

// writesRaw reports whether the record is still exactly its raw line: never
// parsed, or only read through the "message" view and not changed.
func (r *Record) writesRaw() bool {
	if !r.parsed {
		return true
	}
	if !r.lineView || r.fields.Len() != 1 || r.fields.f[0].name != "message" {
		return false
	}
	s, ok := r.fields.f[0].val.(string)
	return ok && len(s) == len(r.Value) && (len(s) == 0 || unsafe.StringData(s) == &r.Value[0])
}

// SetFields marks the record as parsed and returns its (emptied) field set
// for a parser to fill.
func (r *Record) SetFields() *Fields {
	r.fields.Reset()
	r.parsed, r.lineView = true, false
	return &r.fields
}

// Get returns the value of a top-level field, or nil when absent.
func (r *Record) Get(name string) any { return r.Fields().Get(name) }

// Set sets a top-level field, appending it when new.
func (r *Record) Set(name string, v any) { r.Fields().Set(name, v) }

// Clone returns a deep-enough copy for fan-out: fields are copied, raw bytes
// are shared (they are immutable by contract).
func (r *Record) Clone() *Record {
	c := *r
	c.fields = r.fields.Clone()
	return &c
}
