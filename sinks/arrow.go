package sinks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("arrow", "write Arrow IPC files (exactly-once parts), or an IPC stream to standard output with path \"-\"", true,
		func() *ArrowConfig { return NewArrowConfig() })
}

// ArrowConfig is the `arrow` sink:
//
//   - arrow:
//     path: out/events.arrow   # parts out/events-<checkpoint>-<seq>-<id>.arrow; "-": IPC stream on stdout
//     compression: none        # none (default) | lz4 | zstd (IPC buffer compression)
//     batch_rows: 65536        # rows per record batch (default 64Ki)
//
// plus the options of ColumnarOptions. Files use the Arrow IPC file format
// (random access, with a footer); "-" writes the IPC stream format, which
// cannot be committed exactly once (use guarantee: at_least_once).
type ArrowConfig struct {
	ColumnarOptions
	// Compression is none, lz4 or zstd.
	Compression string
	// BatchRows is the most rows in one record batch. A batch also ends
	// when max_buffer_bytes forces buffered rows out, at every Flush and at
	// the end of every part.
	BatchRows int

	stdout io.Writer // where path "-" writes; os.Stdout when nil (tests set it)
}

// NewArrowConfig returns a configuration with its defaults set.
func NewArrowConfig() *ArrowConfig {
	return &ArrowConfig{ColumnarOptions: defaultColumnarOptions(), Compression: "none", BatchRows: 64 << 10}
}

// UnmarshalYAML decodes the options, reporting each problem at its
// position.
func (c *ArrowConfig) UnmarshalYAML(n ast.Node) error {
	return decodeColumnar(n, "arrow", &c.ColumnarOptions, "compression, batch_rows", func(opt yamlOption) (bool, error) {
		var err error
		switch opt.key {
		case "compression":
			c.Compression, err = yamlString(opt)
			if err == nil && c.Compression != "none" && c.Compression != "lz4" && c.Compression != "zstd" {
				err = fmt.Errorf("%q is not one of none, lz4, zstd", c.Compression)
			}
		case "batch_rows":
			var v int64
			v, err = yamlInt(opt, 1, 1<<24)
			c.BatchRows = int(v)
		default:
			return false, nil
		}
		return true, err
	})
}

// JSONSchema implements pipeline.SchemaProvider (the options are decoded
// by hand, so they cannot be reflected).
func (c *ArrowConfig) JSONSchema() map[string]any {
	return columnarJSONSchema("Arrow IPC files, or an IPC stream on standard output", map[string]any{
		"compression": map[string]any{"enum": []string{"none", "lz4", "zstd"}, "default": "none"},
		"batch_rows":  orEnv(map[string]any{"type": "integer", "minimum": 1, "maximum": 1 << 24, "default": 64 << 10, "description": "most rows in a record batch"}),
	})
}

// Validate implements pipeline.Validator.
func (c *ArrowConfig) Validate() error {
	errs := []error{c.validate(true)}
	if c.Compression != "none" && c.Compression != "lz4" && c.Compression != "zstd" {
		errs = append(errs, fmt.Errorf("compression: %q is not one of none, lz4, zstd", c.Compression))
	}
	if c.BatchRows < 1 || c.BatchRows > 1<<24 {
		errs = append(errs, fmt.Errorf("batch_rows: want 1 to 16777216, got %d", c.BatchRows))
	}
	return errors.Join(errs...)
}

// NewSink implements pipeline.SinkConfig: a *ColumnarSink writing Arrow IPC
// files, or an *ArrowStream for path "-".
func (c *ArrowConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("arrow: %w", err)
	}
	if c.Path == "-" {
		if b.Guarantee == pipeline.ExactlyOnce || b.Guarantee == "" {
			return nil, errors.New(`arrow: path "-" (standard output) cannot be committed exactly once; use guarantee: at_least_once, or write files`)
		}
		return newArrowStream(b, c), nil
	}
	return newColumnarSink(b, c.ColumnarOptions, &arrowFormat{cfg: c})
}

func (c *ArrowConfig) ipcOptions(s *arrow.Schema) []ipc.Option {
	opts := []ipc.Option{ipc.WithSchema(s), ipc.WithAllocator(memory.DefaultAllocator)}
	switch c.Compression {
	case "lz4":
		opts = append(opts, ipc.WithLZ4())
	case "zstd":
		opts = append(opts, ipc.WithZstd())
	}
	return opts
}

// arrowSchema converts a columnar schema to Arrow. Timestamps are UTC.
func arrowSchema(s *ColumnarSchema) *arrow.Schema {
	fields := make([]arrow.Field, len(s.Fields))
	for i, f := range s.Fields {
		fields[i] = arrow.Field{Name: f.Name, Type: arrowType(f.Type), Nullable: f.Type.Nullable}
	}
	return arrow.NewSchema(fields, nil)
}

func arrowType(t *ColumnarType) arrow.DataType {
	switch t.Kind {
	case KindString:
		return arrow.BinaryTypes.String
	case KindInt64:
		return arrow.PrimitiveTypes.Int64
	case KindFloat64:
		return arrow.PrimitiveTypes.Float64
	case KindBool:
		return arrow.FixedWidthTypes.Boolean
	case KindTimestampMS:
		return &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	case KindTimestampUS:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case KindDate:
		return arrow.FixedWidthTypes.Date32
	case KindList:
		return arrow.ListOfField(arrow.Field{Name: "element", Type: arrowType(t.Elem), Nullable: t.Elem.Nullable})
	case KindStruct:
		fields := make([]arrow.Field, len(t.Fields))
		for i, f := range t.Fields {
			fields[i] = arrow.Field{Name: f.Name, Type: arrowType(f.Type), Nullable: f.Type.Nullable}
		}
		return arrow.StructOf(fields...)
	}
	return arrow.Null
}

// arrowFormat writes Arrow IPC files with arrow's record builders.
type arrowFormat struct {
	cfg    *ArrowConfig
	schema *ColumnarSchema // last schema converted
	arrow  *arrow.Schema
}

func (f *arrowFormat) name() string { return "arrow" }
func (f *arrowFormat) ext() string  { return "arrow" }

func (f *arrowFormat) newEncoder(w *partFile, s *ColumnarSchema) (columnarEncoder, error) {
	if f.schema != s {
		f.schema, f.arrow = s, arrowSchema(s)
	}
	fw, err := ipc.NewFileWriter(w, f.cfg.ipcOptions(f.arrow)...)
	if err != nil {
		return nil, err
	}
	return newArrowEncoder(f.cfg, s, f.arrow, fw, func() int64 { return w.n }), nil
}

// ipcWriter is what the Arrow file and stream writers have in common.
type ipcWriter interface {
	Write(rec arrow.Record) error
	Close() error
}

// arrowEncoder appends records to record builders and writes a record batch
// every batch_rows rows.
type arrowEncoder struct {
	cs        *ColumnarSchema
	st        *schemaState
	rb        *array.RecordBuilder
	w         ipcWriter
	written   func() int64 // bytes the writer has written out
	batchRows int
	rules     valueRules
	lookup    fieldLookup
	rows      int   // rows in the builders
	bytes     int64 // estimated memory of the rows in the builders
}

func newArrowEncoder(cfg *ArrowConfig, cs *ColumnarSchema, as *arrow.Schema, w ipcWriter, written func() int64) *arrowEncoder {
	return &arrowEncoder{
		cs: cs, st: newSchemaState(cs),
		rb: array.NewRecordBuilder(memory.DefaultAllocator, as), w: w, written: written,
		batchRows: cfg.BatchRows,
		rules:     valueRules{maxValueBytes: cfg.MaxValueBytes, rejectUnknown: cfg.UnknownFields == "reject"},
	}
}

// write checks each record in full before appending any of it, since
// builders cannot take back a half-appended row.
func (e *arrowEncoder) write(recs []*pipeline.Record) (int, error) {
	for i, r := range recs {
		if err := e.cs.checkRecord(r, &e.lookup, &e.rules, e.st.known); err != nil {
			return i, err
		}
		fs := r.Fields()
		for c := range e.cs.Fields {
			f := &e.cs.Fields[c]
			var n int64
			var err error
			switch j := e.lookup.index(fs, c, f.Name); {
			case j < 0:
				n, err = e.append(e.rb.Field(c), f.Type, nil)
			case isScalarKind(f.Type.Kind):
				if sc := fs.ScalarAt(j); sc.Kind != pipeline.ScalarOther {
					n, err = e.appendScalar(e.rb.Field(c), f.Type, &sc)
				} else {
					n, err = e.append(e.rb.Field(c), f.Type, fs.Value(j))
				}
			default:
				n, err = e.append(e.rb.Field(c), f.Type, fs.Value(j))
			}
			if err != nil {
				return i, err
			}
			e.bytes += n
		}
		e.rows++
		if e.rows >= e.batchRows {
			if err := e.flush(); err != nil {
				return i + 1, err
			}
		}
	}
	return len(recs), nil
}

// errChecked is a value that passed checkRecord and then failed to convert:
// a bug, reported rather than written wrong.
var errChecked = errors.New("a checked value failed to convert")

// appendScalar appends a top-level scalar column's value.
func (e *arrowEncoder) appendScalar(b array.Builder, t *ColumnarType, sc *pipeline.Scalar) (int64, error) {
	if sc.Kind == pipeline.ScalarNull {
		b.AppendNull()
		return 1, nil
	}
	var reason string
	switch t.Kind {
	case KindString:
		var s string
		if s, reason = stringOf(sc, &e.rules); reason == "" {
			b.(*array.StringBuilder).Append(s)
			return int64(len(s)) + 4, nil
		}
	case KindInt64:
		var x int64
		if x, reason = int64Of(sc); reason == "" {
			b.(*array.Int64Builder).Append(x)
			return 8, nil
		}
	case KindFloat64:
		var x float64
		if x, reason = float64Of(sc); reason == "" {
			b.(*array.Float64Builder).Append(x)
			return 8, nil
		}
	case KindBool:
		var x bool
		if x, reason = boolOf(sc); reason == "" {
			b.(*array.BooleanBuilder).Append(x)
			return 1, nil
		}
	case KindTimestampMS, KindTimestampUS:
		var x int64
		if x, reason = timestampOf(sc, t.Kind); reason == "" {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(x))
			return 8, nil
		}
	case KindDate:
		var x int32
		if x, reason = dateOf(sc); reason == "" {
			b.(*array.Date32Builder).Append(arrow.Date32(x))
			return 4, nil
		}
	default:
		reason = "unsupported column kind"
	}
	return 0, fmt.Errorf("%w: %s", errChecked, reason)
}

// append appends v and returns an estimate of the memory it takes.
func (e *arrowEncoder) append(b array.Builder, t *ColumnarType, v any) (int64, error) {
	if v == nil {
		b.AppendNull()
		return 1, nil
	}
	var reason string
	switch t.Kind {
	case KindString:
		var s string
		if s, reason = asString(v, &e.rules); reason == "" {
			b.(*array.StringBuilder).Append(s)
			return int64(len(s)) + 4, nil
		}
	case KindInt64:
		var x int64
		if x, reason = asInt64(v); reason == "" {
			b.(*array.Int64Builder).Append(x)
			return 8, nil
		}
	case KindFloat64:
		var x float64
		if x, reason = asFloat64(v); reason == "" {
			b.(*array.Float64Builder).Append(x)
			return 8, nil
		}
	case KindBool:
		var x bool
		if x, reason = asBool(v); reason == "" {
			b.(*array.BooleanBuilder).Append(x)
			return 1, nil
		}
	case KindTimestampMS, KindTimestampUS:
		var x int64
		if x, reason = asTimestamp(v, t.Kind); reason == "" {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(x))
			return 8, nil
		}
	case KindDate:
		var x int32
		if x, reason = asDate(v); reason == "" {
			b.(*array.Date32Builder).Append(arrow.Date32(x))
			return 4, nil
		}
	case KindList:
		var l []any
		if l, reason = asList(v); reason == "" {
			lb := b.(*array.ListBuilder)
			lb.Append(true)
			vb := lb.ValueBuilder()
			n := int64(4)
			for _, el := range l {
				m, err := e.append(vb, t.Elem, el)
				if err != nil {
					return n, err
				}
				n += m
			}
			return n, nil
		}
	case KindStruct:
		var sv structValue
		if sv, reason = asStruct(v); reason == "" {
			sb := b.(*array.StructBuilder)
			sb.Append(true)
			n := int64(1)
			for i := range t.Fields {
				fv, _ := sv.get(t.Fields[i].Name)
				m, err := e.append(sb.FieldBuilder(i), t.Fields[i].Type, fv)
				if err != nil {
					return n, err
				}
				n += m
			}
			return n, nil
		}
	default:
		reason = "unsupported column kind"
	}
	return 0, fmt.Errorf("%w: %s", errChecked, reason)
}

func (e *arrowEncoder) size() int64     { return e.written() + e.bytes }
func (e *arrowEncoder) buffered() int64 { return e.bytes }

func (e *arrowEncoder) flush() error {
	if e.rows == 0 {
		return nil
	}
	rec := e.rb.NewRecord()
	defer rec.Release()
	e.rows, e.bytes = 0, 0
	return e.w.Write(rec)
}

func (e *arrowEncoder) close() error {
	err := e.flush()
	if cerr := e.w.Close(); err == nil {
		err = cerr
	}
	e.rb.Release()
	return err
}

// ArrowStream is the arrow sink with path "-": one Arrow IPC stream on
// standard output, a record batch per batch_rows rows and at every Flush,
// the end-of-stream marker at Close. It implements pipeline.Flusher and
// pipeline.RecordChecker, not Committer: a stream cannot take back what
// it wrote. Check may run on another goroutine than the other methods, and
// concurrently with itself on different records.
type ArrowStream struct {
	cfg      *ArrowConfig
	schema   schemaHolder
	rules    valueRules
	out      *bufio.Writer
	counting *countingWriter
	enc      *arrowEncoder
	closed   bool

	checkMu     sync.Mutex // guards checkLookup
	checkLookup fieldLookup
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func newArrowStream(b pipeline.Build, c *ArrowConfig) *ArrowStream {
	logger := b.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := c.stdout
	if w == nil {
		w = os.Stdout
	}
	s := &ArrowStream{cfg: c, out: bufio.NewWriterSize(w, 256<<10),
		rules: valueRules{maxValueBytes: c.MaxValueBytes, rejectUnknown: c.UnknownFields == "reject"}}
	s.counting = &countingWriter{w: s.out}
	s.schema = schemaHolder{sink: "arrow", logger: logger}
	if c.Schema != nil {
		s.schema.cur.Store(newSchemaState(c.Schema))
	}
	return s
}

// Check implements pipeline.RecordChecker; see ColumnarSink.Check.
func (s *ArrowStream) Check(r *pipeline.Record) error {
	st := s.schema.get(r)
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	if err := st.schema.checkRecord(r, &s.checkLookup, &s.rules, st.known); err != nil {
		return fmt.Errorf("arrow: %w", err)
	}
	return nil
}

// Write implements pipeline.Sink; a record that does not fit the schema is
// an error (records should pass Check first).
func (s *ArrowStream) Write(ctx context.Context, b *pipeline.Batch) error {
	if s.closed {
		return errors.New("arrow: write after close")
	}
	if len(b.Records) == 0 {
		return nil
	}
	if s.enc == nil {
		st := s.schema.get(b.Records[0])
		as := arrowSchema(st.schema)
		s.enc = newArrowEncoder(s.cfg, st.schema, as, ipc.NewWriter(s.counting, s.cfg.ipcOptions(as)...), func() int64 { return s.counting.n })
	}
	if _, err := s.enc.write(b.Records); err != nil {
		return fmt.Errorf("arrow: stream: %w", err)
	}
	return nil
}

// Flush implements pipeline.Flusher: it writes the buffered rows as a
// record batch and flushes standard output.
func (s *ArrowStream) Flush(ctx context.Context) error {
	if s.enc != nil {
		if err := s.enc.flush(); err != nil {
			return fmt.Errorf("arrow: stream: %w", err)
		}
	}
	if err := s.out.Flush(); err != nil {
		return fmt.Errorf("arrow: stream: %w", err)
	}
	return nil
}

// Close implements pipeline.Sink: it writes the rest and the end-of-stream
// marker.
func (s *ArrowStream) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.enc == nil && s.cfg.Schema != nil {
		// Nothing was written: still leave a valid stream (schema, end).
		as := arrowSchema(s.cfg.Schema)
		s.enc = newArrowEncoder(s.cfg, s.cfg.Schema, as, ipc.NewWriter(s.counting, s.cfg.ipcOptions(as)...), func() int64 { return s.counting.n })
	}
	var err error
	if s.enc != nil {
		err = s.enc.close()
	}
	if ferr := s.out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("arrow: stream: %w", err)
	}
	return nil
}
