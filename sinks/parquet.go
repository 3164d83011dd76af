package sinks

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	"github.com/goccy/go-yaml/ast"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("parquet", "write Parquet files (declared or inferred schema, Hive partitions, exactly-once parts)", true,
		func() *ParquetConfig { return NewParquetConfig() })
}

// ParquetConfig is the `parquet` sink:
//
//   - parquet:
//     path: out/lake
//     schema: { ts: "timestamp(ms)", level: string, latency_ms: float64, status: int64 }
//     partition_by: "dt={{ date(window_start) }}"
//     compression: zstd        # snappy (default) | zstd | gzip | none
//     row_group_size: 1048576  # rows per row group (default 1Mi)
//     dictionary: true         # dictionary-encode string columns (default true)
//     page_buffer_size: 256KiB # uncompressed page buffer per column (default 256KiB)
//
// plus the options of ColumnarOptions. Page statistics are always written.
type ParquetConfig struct {
	ColumnarOptions
	// Compression is snappy, zstd, gzip or none.
	Compression string
	// RowGroupSize is the most rows in one row group. A row group also
	// ends when max_buffer_bytes forces buffered rows out, and at the end
	// of every part.
	RowGroupSize int64
	// Dictionary turns dictionary encoding on for string columns (a column
	// chunk whose dictionary passes 1 MiB goes on in plain encoding; the
	// check is made when a page is written).
	Dictionary bool
	// DictionaryColumns, when not empty, limits dictionary encoding to the
	// strings of these top-level columns (`dictionary: [level, service]`):
	// low-cardinality columns gain from it, high-cardinality ones (a log
	// message) only cost time and memory.
	DictionaryColumns []string
	// PageBufferSize is the size of the in-memory page buffer of each
	// column: a page is encoded when it fills. Every open part holds one
	// per column, outside max_buffer_bytes.
	PageBufferSize int
}

// NewParquetConfig returns a configuration with its defaults set.
func NewParquetConfig() *ParquetConfig {
	return &ParquetConfig{
		ColumnarOptions: defaultColumnarOptions(),
		Compression:     "snappy",
		RowGroupSize:    1 << 20,
		Dictionary:      true,
		PageBufferSize:  64 << 10,
	}
}

var parquetCodecs = map[string]compress.Codec{
	"snappy": fastSnappy{}, "zstd": &parquet.Zstd, "gzip": &parquet.Gzip, "none": &parquet.Uncompressed,
}

// fastSnappy is Parquet's SNAPPY codec with the fast block encoder of
// klauspost/compress/s2 in its snappy-compatible mode. parquet-go's own
// codec uses the "better" mode, which took a quarter of the sink's CPU time
// in BenchmarkParquetSink for a few percent smaller files.
type fastSnappy struct{}

func (fastSnappy) String() string                            { return "SNAPPY" }
func (fastSnappy) CompressionCodec() format.CompressionCodec { return format.Snappy }
func (fastSnappy) Encode(dst, src []byte) ([]byte, error)    { return s2.EncodeSnappy(dst, src), nil }
func (fastSnappy) Decode(dst, src []byte) ([]byte, error)    { return snappy.Decode(dst, src) }

// UnmarshalYAML decodes the options, reporting each problem at its
// position.
func (c *ParquetConfig) UnmarshalYAML(n ast.Node) error {
	return decodeColumnar(n, "parquet", &c.ColumnarOptions, parquetKeys, c.decodeOption)
}

// parquetKeys are the options of the parquet sink beyond ColumnarOptions.
const parquetKeys = "compression, row_group_size, dictionary, page_buffer_size"

// decodeOption decodes one of parquetKeys; known is false for other keys.
func (c *ParquetConfig) decodeOption(opt yamlOption) (known bool, err error) {
	switch opt.key {
	case "compression":
		c.Compression, err = yamlString(opt)
		if _, ok := parquetCodecs[c.Compression]; err == nil && !ok {
			err = fmt.Errorf("%q is not one of snappy, zstd, gzip, none", c.Compression)
		}
	case "row_group_size":
		c.RowGroupSize, err = yamlInt(opt, 1, 1<<31)
	case "dictionary":
		if seq, ok := opt.value.(*ast.SequenceNode); ok {
			c.Dictionary, c.DictionaryColumns = true, nil
			for _, v := range seq.Values {
				name, serr := yamlString(yamlOption{key: opt.key, value: pipeline.Unwrap(v)})
				if serr != nil || name == "" || pipeline.IsNull(v) {
					return true, &pipeline.ConfigError{Pos: pipeline.NodePos(v), Msg: "dictionary: want true, false or a list of column names"}
				}
				c.DictionaryColumns = append(c.DictionaryColumns, name)
			}
			if len(c.DictionaryColumns) == 0 {
				c.Dictionary = false // `dictionary: []`
			}
			break
		}
		c.Dictionary, err = yamlBool(opt)
		c.DictionaryColumns = nil
	case "page_buffer_size":
		var v int64
		v, err = yamlBytes(opt, 4<<10, 64<<20)
		c.PageBufferSize = int(v)
	default:
		return false, nil
	}
	return true, err
}

// JSONSchema implements pipeline.SchemaProvider (the options are decoded
// by hand, so they cannot be reflected).
func (c *ParquetConfig) JSONSchema() map[string]any {
	return columnarJSONSchema("Parquet files", parquetJSONSchema())
}

// parquetJSONSchema is the JSON Schema of parquetKeys.
func parquetJSONSchema() map[string]any {
	return map[string]any{
		"compression":    map[string]any{"enum": []string{"snappy", "zstd", "gzip", "none"}, "default": "snappy"},
		"row_group_size": orEnv(map[string]any{"type": "integer", "minimum": 1, "default": 1 << 20, "description": "most rows in a row group"}),
		"dictionary": map[string]any{"default": true, "description": "dictionary-encode string columns: true, false, or the columns to encode",
			"anyOf": []any{map[string]any{"type": "boolean"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}},
		"page_buffer_size": sizeSchema("uncompressed page buffer of each column of each open part", "64KiB"),
	}
}

// Validate implements pipeline.Validator.
func (c *ParquetConfig) Validate() error {
	errs := []error{c.validate(false)}
	if _, ok := parquetCodecs[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("compression: %q is not one of snappy, zstd, gzip, none", c.Compression))
	}
	if c.RowGroupSize < 1 {
		errs = append(errs, fmt.Errorf("row_group_size: want at least 1, got %d", c.RowGroupSize))
	}
	if c.Schema != nil {
		for _, name := range c.DictionaryColumns {
			if !slices.ContainsFunc(c.Schema.Fields, func(f ColumnarField) bool { return f.Name == name }) {
				errs = append(errs, fmt.Errorf("dictionary: %q is not a column of the schema", name))
			}
		}
	}
	if c.PageBufferSize < 4<<10 || c.PageBufferSize > 64<<20 {
		errs = append(errs, fmt.Errorf("page_buffer_size: want 4KiB to 64MiB, got %d", c.PageBufferSize))
	}
	return errors.Join(errs...)
}

// NewSink implements pipeline.SinkConfig. The sink is a *ColumnarSink.
func (c *ParquetConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	return newColumnarSink(b, c.ColumnarOptions, &parquetFormat{cfg: c})
}

// parquetFormat writes Parquet files with parquet-go, column by column: a
// batch of rows is shredded into one slice of values per leaf column, and
// each slice goes to its column writer in one call. (Measured against
// row-wise Writer.WriteRows in BenchmarkParquetWriteModes.)
type parquetFormat struct {
	cfg *ParquetConfig
	// The last schema built, reused by every part with the same schema.
	schema *ColumnarSchema
	plan   *parquetPlan
	// scratch holds one slice of values per leaf column; parts are written
	// one at a time on the sink's goroutine, so they share it.
	scratch [][]parquet.Value
	marks   []int
}

func (f *parquetFormat) name() string { return "parquet" }
func (f *parquetFormat) ext() string  { return "parquet" }

// parquetPlan is a columnar schema turned into parquet-go terms.
type parquetPlan struct {
	schema  *parquet.Schema
	nodes   []pqNode // one per top-level column
	nleaves int
	config  *parquet.WriterConfig
}

// pqNode mirrors a ColumnarType with the leaf columns and repetition level
// it maps to.
type pqNode struct {
	t       *ColumnarType
	leaf    int // first leaf column under this node
	nleaves int
	rep     int // repetition level of a list's elements
	elem    *pqNode
	fields  []pqNode
}

func (f *parquetFormat) planFor(s *ColumnarSchema) (*parquetPlan, error) {
	if f.schema == s && f.plan != nil {
		return f.plan, nil
	}
	p := &parquetPlan{}
	root := &pqGroup{}
	for _, fl := range s.Fields {
		dict := f.cfg.Dictionary && (len(f.cfg.DictionaryColumns) == 0 || slices.Contains(f.cfg.DictionaryColumns, fl.Name))
		node, pn, err := f.node(fl.Type, &p.nleaves, 0, dict)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", fl.Name, err)
		}
		root.fields = append(root.fields, &pqField{Node: node, name: fl.Name})
		p.nodes = append(p.nodes, pn)
	}
	p.schema = parquet.NewSchema("weir", root)
	codec := parquetCodecs[f.cfg.Compression]
	cfg, err := parquet.NewWriterConfig(
		p.schema,
		parquet.Compression(codec),
		parquet.PageBufferSize(f.cfg.PageBufferSize),
		parquet.DataPageStatistics(true),
		// Like parquet-mr: a column chunk whose dictionary outgrows 1 MiB
		// (a high-cardinality column) goes on in plain encoding.
		parquet.DictionaryMaxBytes(1<<20),
		parquet.CreatedBy("weir", "dev", ""),
		parquet.KeyValueMetadata("weir.schema", s.String()),
	)
	if err != nil {
		return nil, err
	}
	p.config = cfg
	f.schema, f.plan = s, p
	f.scratch = make([][]parquet.Value, p.nleaves)
	f.marks = make([]int, p.nleaves)
	return p, nil
}

// node builds the parquet node of t, numbering its leaves from *leaf;
// dict says whether its strings are dictionary-encoded.
func (f *parquetFormat) node(t *ColumnarType, leaf *int, rep int, dict bool) (parquet.Node, pqNode, error) {
	pn := pqNode{t: t, leaf: *leaf}
	var n parquet.Node
	switch t.Kind {
	case KindString:
		n = parquet.String()
		if dict {
			n = parquet.Encoded(n, &parquet.RLEDictionary)
		}
	case KindInt64:
		n = parquet.Leaf(parquet.Int64Type)
	case KindFloat64:
		n = parquet.Leaf(parquet.DoubleType)
	case KindBool:
		n = parquet.Leaf(parquet.BooleanType)
	case KindTimestampMS:
		n = parquet.Timestamp(parquet.Millisecond)
	case KindTimestampUS:
		n = parquet.Timestamp(parquet.Microsecond)
	case KindDate:
		n = parquet.Date()
	case KindList:
		en, epn, err := f.node(t.Elem, leaf, rep+1, dict)
		if err != nil {
			return nil, pn, err
		}
		n = parquet.List(en)
		pn.rep, pn.elem = rep+1, &epn
		pn.nleaves = *leaf - pn.leaf
	case KindStruct:
		g := &pqGroup{}
		for _, fl := range t.Fields {
			fn, fpn, err := f.node(fl.Type, leaf, rep, dict)
			if err != nil {
				return nil, pn, fmt.Errorf("field %q: %w", fl.Name, err)
			}
			g.fields = append(g.fields, &pqField{Node: fn, name: fl.Name})
			pn.fields = append(pn.fields, fpn)
		}
		if len(g.fields) == 0 {
			return nil, pn, errors.New("a struct needs at least one field")
		}
		n = g
		pn.nleaves = *leaf - pn.leaf
	default:
		return nil, pn, fmt.Errorf("unsupported type %s", t)
	}
	if n.Leaf() {
		*leaf++
		pn.nleaves = 1
	}
	if t.Nullable {
		n = parquet.Optional(n)
	} else {
		n = parquet.Required(n)
	}
	return n, pn, nil
}

// pqGroup is a parquet group whose fields keep their declared order
// (parquet.Group sorts them by name).
type pqGroup struct{ fields []parquet.Field }

var groupType = parquet.Group{}.Type()

func (g *pqGroup) ID() int                     { return 0 }
func (g *pqGroup) String() string              { return fmt.Sprintf("group(%d fields)", len(g.fields)) }
func (g *pqGroup) Type() parquet.Type          { return groupType }
func (g *pqGroup) Optional() bool              { return false }
func (g *pqGroup) Repeated() bool              { return false }
func (g *pqGroup) Required() bool              { return true }
func (g *pqGroup) Leaf() bool                  { return false }
func (g *pqGroup) Fields() []parquet.Field     { return g.fields }
func (g *pqGroup) Encoding() encoding.Encoding { return nil }
func (g *pqGroup) Compression() compress.Codec { return nil }
func (g *pqGroup) GoType() reflect.Type        { return reflect.TypeFor[map[string]any]() } // not used: rows are never reflected

// pqField names a node within a pqGroup.
type pqField struct {
	parquet.Node
	name string
}

func (f *pqField) Name() string { return f.name }
func (f *pqField) Value(base reflect.Value) reflect.Value {
	if base.Kind() == reflect.Map {
		return base.MapIndex(reflect.ValueOf(f.name))
	}
	return reflect.Value{}
}

func (f *parquetFormat) newEncoder(w *partFile, s *ColumnarSchema) (columnarEncoder, error) {
	p, err := f.planFor(s)
	if err != nil {
		return nil, err
	}
	e := &parquetEncoder{f: f, plan: p, cs: s, file: w, rgLimit: f.cfg.RowGroupSize}
	e.w = parquet.NewWriter(w, p.config)
	e.cols = e.w.ColumnWriters()
	if len(e.cols) != p.nleaves {
		return nil, fmt.Errorf("schema has %d leaf columns, the writer %d", p.nleaves, len(e.cols))
	}
	e.rules = valueRules{maxValueBytes: f.cfg.MaxValueBytes, rejectUnknown: f.cfg.UnknownFields == "reject"}
	return e, nil
}

type parquetEncoder struct {
	lookup  fieldLookup
	f       *parquetFormat
	plan    *parquetPlan
	cs      *ColumnarSchema
	file    *partFile
	w       *parquet.Writer
	cols    []*parquet.ColumnWriter
	rules   valueRules
	rgRows  int64
	rgLimit int64
	known   map[string]struct{}
}

func (e *parquetEncoder) write(recs []*pipeline.Record) (int, error) {
	done := 0
	if len(e.f.scratch) != e.plan.nleaves { // another schema's parts were written since
		e.f.scratch, e.f.marks = make([][]parquet.Value, e.plan.nleaves), make([]int, e.plan.nleaves)
	}
	vals, marks := e.f.scratch, e.f.marks
	for done < len(recs) {
		n := len(recs) - done
		if room := e.rgLimit - e.rgRows; int64(n) > room {
			n = int(room)
		}
		for i := range vals {
			vals[i] = vals[i][:0]
		}
		good := n
		var ferr error
		for i, r := range recs[done : done+n] {
			for c := range vals {
				marks[c] = len(vals[c])
			}
			if err := e.shredRecord(r); err != nil {
				for c := range vals {
					vals[c] = vals[c][:marks[c]]
				}
				good, ferr = i, err
				break
			}
		}
		if good > 0 {
			for c := range vals {
				if _, err := e.cols[c].WriteRowValues(vals[c]); err != nil {
					return done, err
				}
			}
		}
		for c := range vals {
			clear(vals[c]) // do not keep the records' strings alive
		}
		e.rgRows += int64(good)
		done += good
		if ferr != nil {
			return done, ferr
		}
		if e.rgRows >= e.rgLimit {
			if err := e.flush(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

func (e *parquetEncoder) shredRecord(r *pipeline.Record) error {
	fs := r.Fields()
	if e.rules.rejectUnknown {
		if e.known == nil {
			e.known = newSchemaState(e.cs).known
		}
		for i := 0; i < fs.Len(); i++ {
			if _, ok := e.known[fs.Name(i)]; !ok {
				return &ColumnarFieldError{Field: fs.Name(i), Reason: "not in the schema (unknown_fields: reject)"}
			}
		}
	}
	for i := range e.plan.nodes {
		n := &e.plan.nodes[i]
		f := &e.cs.Fields[i]
		var err *ColumnarFieldError
		switch j := e.lookup.index(fs, i, f.Name); {
		case j < 0:
			err = e.shred(n, nil, 0, 0)
		case isScalarKind(f.Type.Kind):
			if sc := fs.ScalarAt(j); sc.Kind != pipeline.ScalarOther {
				err = e.shredScalar(n, &sc)
			} else {
				err = e.shred(n, fs.Value(j), 0, 0)
			}
		default:
			err = e.shred(n, fs.Value(j), 0, 0)
		}
		if err != nil {
			return err.under(f.Name)
		}
	}
	return nil
}

// shredScalar appends a top-level scalar column's value.
func (e *parquetEncoder) shredScalar(n *pqNode, sc *pipeline.Scalar) *ColumnarFieldError {
	if sc.Kind == pipeline.ScalarNull {
		if !n.t.Nullable {
			return nullErr(n.t)
		}
		e.put(n.leaf, parquet.Value{}, 0, 0)
		return nil
	}
	d := 0
	if n.t.Nullable {
		d = 1
	}
	var reason string
	switch n.t.Kind {
	case KindString:
		var s string
		if s, reason = stringOf(sc, &e.rules); reason == "" {
			e.put(n.leaf, parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s))), 0, d)
		}
	case KindInt64:
		var x int64
		if x, reason = int64Of(sc); reason == "" {
			e.put(n.leaf, parquet.Int64Value(x), 0, d)
		}
	case KindFloat64:
		var x float64
		if x, reason = float64Of(sc); reason == "" {
			e.put(n.leaf, parquet.DoubleValue(x), 0, d)
		}
	case KindBool:
		var x bool
		if x, reason = boolOf(sc); reason == "" {
			e.put(n.leaf, parquet.BooleanValue(x), 0, d)
		}
	case KindTimestampMS, KindTimestampUS:
		var x int64
		if x, reason = timestampOf(sc, n.t.Kind); reason == "" {
			e.put(n.leaf, parquet.Int64Value(x), 0, d)
		}
	case KindDate:
		var x int32
		if x, reason = dateOf(sc); reason == "" {
			e.put(n.leaf, parquet.Int32Value(x), 0, d)
		}
	}
	if reason != "" {
		return fieldErr(reason)
	}
	return nil
}

// shred appends v's leaf values, Dremel style: r is the repetition level of
// the first value, d the definition level reached by v's ancestors.
func (e *parquetEncoder) shred(n *pqNode, v any, r, d int) *ColumnarFieldError {
	if v == nil {
		if !n.t.Nullable {
			return nullErr(n.t)
		}
		e.nulls(n, r, d)
		return nil
	}
	if n.t.Nullable {
		d++
	}
	var reason string
	switch n.t.Kind {
	case KindString:
		var s string
		if s, reason = asString(v, &e.rules); reason == "" {
			e.put(n.leaf, parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s))), r, d)
		}
	case KindInt64:
		var x int64
		if x, reason = asInt64(v); reason == "" {
			e.put(n.leaf, parquet.Int64Value(x), r, d)
		}
	case KindFloat64:
		var x float64
		if x, reason = asFloat64(v); reason == "" {
			e.put(n.leaf, parquet.DoubleValue(x), r, d)
		}
	case KindBool:
		var x bool
		if x, reason = asBool(v); reason == "" {
			e.put(n.leaf, parquet.BooleanValue(x), r, d)
		}
	case KindTimestampMS, KindTimestampUS:
		var x int64
		if x, reason = asTimestamp(v, n.t.Kind); reason == "" {
			e.put(n.leaf, parquet.Int64Value(x), r, d)
		}
	case KindDate:
		var x int32
		if x, reason = asDate(v); reason == "" {
			e.put(n.leaf, parquet.Int32Value(x), r, d)
		}
	case KindList:
		var l []any
		if l, reason = asList(v); reason == "" {
			if len(l) == 0 {
				e.nulls(n, r, d) // defined, no elements
				return nil
			}
			for i, el := range l {
				er := r
				if i > 0 {
					er = n.rep
				}
				if err := e.shred(n.elem, el, er, d+1); err != nil {
					return err.at(i)
				}
			}
		}
	case KindStruct:
		var sv structValue
		if sv, reason = asStruct(v); reason == "" {
			for i := range n.fields {
				f := &n.t.Fields[i]
				fv, _ := sv.get(f.Name)
				if err := e.shred(&n.fields[i], fv, r, d); err != nil {
					return err.under(f.Name)
				}
			}
			if e.rules.rejectUnknown {
				if k := sv.unknown(n.t); k != "" {
					return fieldErr("not in the schema (unknown_fields: reject)").under(k)
				}
			}
		}
	default:
		reason = "unsupported column kind " + n.t.Kind.String()
	}
	if reason != "" {
		return fieldErr(reason)
	}
	return nil
}

// put appends v to leaf column c at levels (r, d). (Setting the levels in
// place inlines; Value.Level, which copies, does not.)
func (e *parquetEncoder) put(c int, v parquet.Value, r, d int) {
	vals := append(e.f.scratch[c], v)
	p := &vals[len(vals)-1]
	if r != 0 {
		p.SetRepetitionLevel(r)
	}
	if d != 0 {
		p.SetDefinitionLevel(d)
	}
	p.SetColumnIndex(c)
	e.f.scratch[c] = vals
}

// nulls appends one undefined value at levels (r, d) to every leaf under n.
func (e *parquetEncoder) nulls(n *pqNode, r, d int) {
	for c := n.leaf; c < n.leaf+n.nleaves; c++ {
		e.put(c, parquet.Value{}, r, d)
	}
}

func (e *parquetEncoder) size() int64 { return e.w.Size() }

// buffered is twice parquet-go's own estimate of what the open row group
// holds (encoded pages, values not yet encoded, dictionary values): the
// estimate leaves out buffer slack and the dictionaries' hash tables and
// key copies, which measured between one and three times as much again
// (BenchmarkParquetSinkPartitions).
func (e *parquetEncoder) buffered() int64 {
	if b := e.w.Size() - e.file.n; b > 0 {
		return 2 * b
	}
	return 0
}

func (e *parquetEncoder) flush() error {
	e.rgRows = 0
	return e.w.Flush()
}

func (e *parquetEncoder) close() error { return e.w.Close() }
