package pipeline

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// DefaultBatchSize is the most records a source puts in one batch unless
// configured otherwise.
const DefaultBatchSize = 1024

// DeadLetter is a record that could not be processed, with why and where.
type DeadLetter struct {
	Record    *Record
	Reason    string // short machine-friendly reason: "parse", "late", "too_long", "schema"...
	Error     string // the human-readable error
	Component string // "app-errors/operators[0]/parse"
}

// Batch is the unit that moves between stages: records in stream order, and
// the dead letters produced while making them.
//
// A stage owns the batch it received until it passes it on; operators
// rewrite Records in place (drop, modify, replace) and append to Dead.
type Batch struct {
	Records []*Record
	Dead    []DeadLetter
}

// Reject moves r to the dead-letter list with a reason. It does not remove r
// from Records: operators that reject while compacting simply do not keep it.
func (b *Batch) Reject(r *Record, component, reason string, err error) {
	d := DeadLetter{Record: r, Reason: reason, Component: component}
	if err != nil {
		d.Error = err.Error()
	}
	b.Dead = append(b.Dead, d)
}

// Len returns the number of records (not counting dead letters).
func (b *Batch) Len() int { return len(b.Records) }

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	clear(b.Records)
	b.Records = b.Records[:0]
	clear(b.Dead)
	b.Dead = b.Dead[:0]
}

// NewRecords returns n zeroed records allocated in one block, for sources
// that fill a batch: one allocation per batch instead of one per record.
func NewRecords(n int) []*Record {
	block := make([]Record, n)
	out := make([]*Record, n)
	for i := range block {
		out[i] = &block[i]
	}
	return out
}

// ReserveFields gives every record of recs whose structured view has no
// room yet space for n fields, all carved from one allocation. A parser
// calls it once per batch: one allocation instead of one per record. A
// record that grows past n fields moves to a slice of its own.
func ReserveFields(recs []*Record, n int) {
	k := 0
	for _, r := range recs {
		if cap(r.fields.f) == 0 {
			k++
		}
	}
	if k == 0 || n <= 0 {
		return
	}
	slab := make([]field, k*n)
	for _, r := range recs {
		if cap(r.fields.f) == 0 {
			r.fields.f, slab = slab[:0:n], slab[n:]
		}
	}
}

// DeadLetterRecord renders a dead letter as the record the dead-letter
// output writes: the original bytes (as a string when valid UTF-8, base64
// otherwise), the reason, the error, the component and the source position.
func (d DeadLetter) DeadLetterRecord(at time.Time) *Record {
	out := &Record{Time: at}
	fs := out.SetFields()
	fs.Set("reason", d.Reason)
	if d.Error != "" {
		fs.Set("error", d.Error)
	}
	fs.Set("component", d.Component)
	if r := d.Record; r != nil {
		out.Source, out.Origin = r.Source, r.Origin
		if utf8.Valid(r.Value) {
			fs.Set("value", string(r.Value))
		} else {
			fs.Set("value_base64", r.Value)
		}
		if r.Origin.Name != "" {
			fs.Set("origin", r.Origin.Name)
		}
		fs.Set("offset", r.Origin.Offset)
		if r.Origin.Line > 0 {
			fs.Set("line", r.Origin.Line)
		}
		if r.Origin.ID != "" {
			fs.Set("id", r.Origin.ID)
		}
		if len(r.Value) == 0 && r.parsed {
			// A record made by an operator has no raw bytes: keep its fields.
			fs.Set("record", &r.fields)
		}
	}
	return out
}

// DeadLetterFromRecord reads back a dead letter that DeadLetterRecord
// rendered as JSON (one that crossed a Kafka topic from an upstream
// pipeline, say), so that it can be dead-lettered again as it was: the
// same reason, error, component, source position and original bytes.
func DeadLetterFromRecord(value []byte) (DeadLetter, error) {
	var in Fields
	if err := in.ParseJSONObject(value); err != nil {
		return DeadLetter{}, err
	}
	text := func(name string) string {
		s, _ := in.Get(name).(string)
		return s
	}
	number := func(name string) int64 {
		switch v := in.Get(name).(type) {
		case int64:
			return v
		case float64:
			return int64(v)
		}
		return 0
	}
	d := DeadLetter{Reason: text("reason"), Error: text("error"), Component: text("component")}
	if d.Reason == "" {
		return DeadLetter{}, errors.New("not a dead letter: no reason")
	}
	r := &Record{Origin: Origin{Name: text("origin"), Offset: number("offset"), Line: number("line"), ID: text("id")}}
	switch v := in.Get("value").(type) {
	case string:
		r.Value = []byte(v)
	}
	if s := text("value_base64"); s != "" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return DeadLetter{}, fmt.Errorf("dead letter value_base64: %w", err)
		}
		r.Value = b
	}
	if i := in.index("record"); i >= 0 && in.f[i].kind == rawObject && len(r.Value) == 0 {
		// An operator's record: its fields, in their order.
		if err := r.SetFields().ParseJSONObject(in.f[i].raw); err != nil {
			return DeadLetter{}, fmt.Errorf("dead letter record: %w", err)
		}
	}
	d.Record = r
	return d, nil
}
