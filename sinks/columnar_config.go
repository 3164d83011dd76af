package sinks

import (
	"errors"
	"fmt"
	"math"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

// ColumnarOptions are the options the parquet and arrow sinks share.
//
//	path: out/lake            # output directory, or out/events.arrow (directory out, file stem "events")
//	schema: { ts: "timestamp(ms)!", level: string }   # absent: inferred from the first record
//	partition_by: "dt={{ date(ts) }}/hour={{ hour(ts) }}"
//	prefix: part              # file name stem; default "part" (or the stem of path)
//	max_open_files: 100       # partitions open at once; the least recently used is rolled
//	max_file_bytes: 256MiB    # roll a part when it reaches this size
//	max_file_age: 0s          # roll a part this long after it was opened (wall clock); 0: never
//	max_buffer_bytes: 64MiB   # buffered rows across open parts (see MaxBufferBytes)
//	max_value_bytes: 1MiB     # longest string value accepted
//	unknown_fields: ignore    # ignore | reject: record fields that are not columns
type ColumnarOptions struct {
	// Path is the output directory. When its last element ends in the
	// format's extension (".parquet", ".arrow") the directory is its parent
	// and the file names start with that element's stem. "-" (arrow only)
	// writes one IPC stream to standard output. It is literal: a {{ }}
	// template is refused (the sink names its part files itself, by
	// checkpoint and task, to commit them idempotently; directories that
	// vary per record are PartitionBy).
	Path string
	// Schema is the declared schema; nil means infer it from the first
	// record and keep it fixed from then on (it is carried in the commit
	// token, so a restart keeps it too).
	Schema *ColumnarSchema
	// PartitionBy renders each record's partition directory, relative to
	// the output directory (Hive style "key=value/..."), with
	// pipeline.Template.RenderPath: values are percent-encoded as Hive
	// does ("/" is %2F), so the directory levels are those of the literal
	// text, which must be relative with no empty, ".", ".." or hidden
	// segment (pipeline.Template.CheckRelativePath). nil: no partitions.
	PartitionBy *pipeline.Template
	// Prefix is the stem of part file names; default "part", or the stem
	// of Path when Path names a file.
	Prefix string
	// MaxOpenFiles bounds the parts (one per partition) open at once;
	// opening one more rolls the least recently written. Default 100.
	MaxOpenFiles int
	// MaxFileBytes rolls a part once its estimated size reaches it.
	// Default 256 MiB.
	MaxFileBytes int64
	// MaxFileAge rolls a part that has been open this long (wall clock,
	// checked on every write and flush). 0 turns it off; the default.
	MaxFileAge time.Duration
	// MaxBufferBytes bounds the rows held in memory across all open
	// parts, as the encoders count them (encoded pages, values not yet
	// encoded, dictionary values); past it the largest buffer is written
	// out (a Parquet row group, an Arrow record batch). The Go heap the
	// sink holds is larger: about twice this with many dictionary-encoded
	// strings, plus a page buffer per column per open Parquet part (see
	// BenchmarkParquetSinkPartitions). Default 64 MiB.
	MaxBufferBytes int64
	// MaxValueBytes is the longest string value a record may carry; a
	// longer one is a schema error. Default 1 MiB.
	MaxValueBytes int
	// UnknownFields says what to do with record fields that are not
	// columns: "ignore" (the default: the schema selects the columns) or
	// "reject" (the record is a schema error). Nested objects follow the
	// same rule.
	UnknownFields string

	pos          pipeline.Pos // where the configuration is, when it came from YAML
	optionalPath bool         // path may be empty (s3: the key prefix)
}

func defaultColumnarOptions() ColumnarOptions {
	return ColumnarOptions{
		MaxOpenFiles:   100,
		MaxFileBytes:   256 << 20,
		MaxBufferBytes: 64 << 20,
		MaxValueBytes:  1 << 20,
		UnknownFields:  "ignore",
	}
}

// validate checks the shared options; errors are unprefixed (the loader
// and NewSink add the sink name).
func (o *ColumnarOptions) validate(allowStdout bool) error {
	var errs []error
	switch {
	case o.Path == "" && o.optionalPath:
	case o.Path == "":
		errs = append(errs, errors.New("path is required"))
	case o.Path == "-" && !allowStdout:
		errs = append(errs, errors.New(`path "-" (standard output) is only for the arrow sink`))
	case o.Path == "-" && o.PartitionBy != nil:
		errs = append(errs, errors.New(`partition_by cannot be used with path "-" (standard output)`))
	default:
		if err := checkColumnarPath(o.Path); err != nil {
			errs = append(errs, err)
		}
	}
	if o.PartitionBy != nil {
		if err := o.PartitionBy.CheckRelativePath(); err != nil {
			errs = append(errs, fmt.Errorf("partition_by: %w", err))
		}
	}
	if o.Prefix != "" && (strings.ContainsAny(o.Prefix, `/\`) || strings.HasPrefix(o.Prefix, ".") || len(o.Prefix) > 100) {
		errs = append(errs, fmt.Errorf("prefix %q: want a plain file name stem (no slashes, not starting with a dot)", o.Prefix))
	}
	if o.MaxOpenFiles < 1 || o.MaxOpenFiles > 100000 {
		errs = append(errs, fmt.Errorf("max_open_files: want 1 to 100000, got %d", o.MaxOpenFiles))
	}
	if o.MaxFileBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_file_bytes: want at least 1KiB, got %d", o.MaxFileBytes))
	}
	if o.MaxFileAge < 0 {
		errs = append(errs, fmt.Errorf("max_file_age: want 0 (off) or a positive duration, got %s", o.MaxFileAge))
	}
	if o.MaxBufferBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("max_buffer_bytes: want at least 64KiB, got %d", o.MaxBufferBytes))
	}
	if o.MaxValueBytes < 1 || o.MaxValueBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max_value_bytes: want 1 to 1GiB, got %d", o.MaxValueBytes))
	}
	if o.UnknownFields != "ignore" && o.UnknownFields != "reject" {
		errs = append(errs, fmt.Errorf("unknown_fields: %q is not one of ignore, reject", o.UnknownFields))
	}
	return errors.Join(errs...)
}

// yamlOption is one decoded `key: value` of a sink's configuration.
type yamlOption struct {
	key   string
	value ast.Node // nil for `key:` with no value
	pos   pipeline.Pos
}

// columnarKeys are the options every columnar sink takes.
var columnarKeys = []string{"path", "schema", "partition_by", "prefix", "max_open_files", "max_file_bytes",
	"max_file_age", "max_buffer_bytes", "max_value_bytes", "unknown_fields"}

// decodeColumnar decodes a columnar sink's mapping: the shared options into
// o, and every other key through extra, which reports whether it knew the
// key. Every error is a *pipeline.ConfigError at the value's position.
func decodeColumnar(n ast.Node, sink string, o *ColumnarOptions, extraKeys string, extra func(yamlOption) (bool, error)) error {
	kvs, ok := pipeline.Mapping(n)
	if !ok {
		return &pipeline.ConfigError{Pos: pipeline.NodePos(n), Msg: sink + ": want a mapping of options such as `{path: out/lake}`"}
	}
	if pipeline.IsNull(n) {
		return nil
	}
	o.pos = pipeline.NodePos(n)
	seen := map[string]bool{}
	for _, kv := range kvs {
		opt := yamlOption{key: kv.Key, value: kv.Value, pos: kv.Pos()}
		if opt.value != nil {
			opt.pos = pipeline.NodePos(opt.value)
		}
		if seen[opt.key] {
			return &pipeline.ConfigError{Pos: kv.Pos(), Msg: fmt.Sprintf("%s: duplicate key %q", sink, opt.key)}
		}
		seen[opt.key] = true
		if opt.value == nil && (slices.Contains(columnarKeys, opt.key) || slices.Contains(strings.Split(extraKeys, ", "), opt.key)) {
			continue // null is the option's default, as if left out
		}
		err := decodeSharedOption(opt, o)
		if errors.Is(err, errUnknownOption) {
			var known bool
			known, err = extra(opt)
			if !known {
				return &pipeline.ConfigError{Pos: kv.Pos(), Msg: fmt.Sprintf(
					"%s: unknown key %q (want %s, %s)", sink, opt.key, strings.Join(columnarKeys, ", "), extraKeys)}
			}
		}
		if err != nil {
			var ce *pipeline.ConfigError
			if errors.As(err, &ce) {
				if !strings.HasPrefix(ce.Msg, sink+":") {
					ce.Msg = sink + ": " + ce.Msg
				}
				return ce
			}
			return &pipeline.ConfigError{Pos: opt.pos, Msg: fmt.Sprintf("%s: %s: %v", sink, opt.key, err)}
		}
	}
	if o.Path == "" && !o.optionalPath {
		return &pipeline.ConfigError{Pos: o.pos, Msg: sink + ": path is required (an output directory such as out/lake)"}
	}
	return nil
}

var errUnknownOption = errors.New("unknown option")

// checkColumnarPath refuses a {{ }} template in a columnar sink's path,
// pointing to partition_by, with the split that does what it meant when it
// can tell: out/s/{{ date(window_start) }}/p.parquet is path
// out/s/p.parquet with partition_by "{{ date(window_start) }}".
func checkColumnarPath(p string) error {
	if !strings.Contains(p, "{{") {
		return nil
	}
	msg := fmt.Sprintf("path %q holds a {{ }} template, but path is the output directory, literal text: the sink names its part files itself (by checkpoint and task, so that commits are idempotent). Directories that vary per record go in partition_by", p)
	segs := strings.Split(p, "/")
	first := slices.IndexFunc(segs, func(s string) bool { return strings.Contains(s, "{{") })
	dirs, file := segs[first:], ""
	if last := segs[len(segs)-1]; strings.HasSuffix(last, ".parquet") || strings.HasSuffix(last, ".arrow") {
		dirs, file = segs[first:len(segs)-1], last
	}
	if len(dirs) == 0 || strings.Contains(file, "{{") || slices.ContainsFunc(dirs, func(s string) bool { return strings.Count(s, "{{") != strings.Count(s, "}}") }) {
		return fmt.Errorf(`%s, such as partition_by: "dt={{ date(ts) }}"`, msg)
	}
	dir := path.Join(append(slices.Clone(segs[:first]), file)...)
	switch {
	case strings.HasPrefix(p, "/"):
		dir = "/" + dir
	case dir == "":
		dir = "."
	}
	return fmt.Errorf("%s: path: %s, partition_by: %q", msg, dir, strings.Join(dirs, "/"))
}

func decodeSharedOption(opt yamlOption, o *ColumnarOptions) error {
	var err error
	switch opt.key {
	case "path":
		o.Path, err = yamlString(opt)
		if err == nil && o.Path == "" {
			err = errors.New("want a non-empty path")
		}
		if err == nil {
			if err = checkColumnarPath(o.Path); err != nil {
				return &pipeline.ConfigError{Pos: opt.pos, Msg: err.Error()}
			}
		}
	case "schema":
		if opt.value == nil {
			o.Schema = nil // `schema:` with nothing: infer
			return nil
		}
		s := new(ColumnarSchema)
		if err := s.UnmarshalYAML(opt.value); err != nil {
			return err
		}
		o.Schema = s
	case "partition_by":
		if opt.value == nil {
			o.PartitionBy = nil
			return nil
		}
		t := new(pipeline.Template)
		if err := t.UnmarshalYAML(opt.value); err != nil {
			return err
		}
		if t.Source == "" {
			return errors.New("want a path template such as \"dt={{ date(ts) }}\"")
		}
		if err := t.CheckRelativePath(); err != nil {
			return err
		}
		o.PartitionBy = t
	case "prefix":
		o.Prefix, err = yamlString(opt)
	case "max_open_files":
		var v int64
		v, err = yamlInt(opt, 1, 100000)
		o.MaxOpenFiles = int(v)
	case "max_file_bytes":
		o.MaxFileBytes, err = yamlBytes(opt, 1024, math.MaxInt64)
	case "max_file_age":
		o.MaxFileAge, err = yamlDuration(opt)
	case "max_buffer_bytes":
		o.MaxBufferBytes, err = yamlBytes(opt, 64<<10, math.MaxInt64)
	case "max_value_bytes":
		var v int64
		v, err = yamlBytes(opt, 1, 1<<30)
		o.MaxValueBytes = int(v)
	case "unknown_fields":
		o.UnknownFields, err = yamlString(opt)
		if err == nil && o.UnknownFields != "ignore" && o.UnknownFields != "reject" {
			err = fmt.Errorf("%q is not one of ignore, reject", o.UnknownFields)
		}
	default:
		return errUnknownOption
	}
	return err
}

func yamlScalar(opt yamlOption) (string, error) {
	switch v := opt.value.(type) {
	case nil:
		return "", errors.New("want a value")
	case *ast.StringNode:
		return v.Value, nil
	case ast.ScalarNode:
		return v.GetToken().Value, nil
	}
	return "", fmt.Errorf("want a single value, got a %s", nodeKind(opt.value))
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case *ast.SequenceNode:
		return "list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	}
	return "value"
}

func yamlString(opt yamlOption) (string, error) {
	if _, ok := opt.value.(*ast.StringNode); !ok && opt.value != nil {
		if _, scalar := opt.value.(ast.ScalarNode); !scalar {
			return "", fmt.Errorf("want a string, got a %s", nodeKind(opt.value))
		}
	}
	return yamlScalar(opt)
}

func yamlInt(opt yamlOption, min, max int64) (int64, error) {
	s, err := yamlScalar(opt)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
	if err != nil || v < min || v > max {
		return 0, fmt.Errorf("want a whole number from %d to %d, got %q", min, max, s)
	}
	return v, nil
}

func yamlBool(opt yamlOption) (bool, error) {
	if b, ok := opt.value.(*ast.BoolNode); ok {
		return b.Value, nil
	}
	s, _ := yamlScalar(opt)
	return false, fmt.Errorf("want true or false, got %q", s)
}

func yamlDuration(opt yamlOption) (time.Duration, error) {
	s, err := yamlScalar(opt)
	if err != nil {
		return 0, err
	}
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a duration such as 10m or 1h (0 turns it off), got %q", s)
	}
	return d, nil
}

func yamlBytes(opt yamlOption, min, max int64) (int64, error) {
	s, err := yamlScalar(opt)
	if err != nil {
		return 0, err
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return 0, err
	}
	if v < min || v > max {
		return 0, fmt.Errorf("%q is out of range (want %s to %s)", s, formatBytes(min), formatBytes(max))
	}
	return v, nil
}

// ParseByteSize reads a size such as 1048576, 512KiB, 128MiB, 1GiB, 64MB or
// 10kB (KiB/MiB/GiB are powers of 1024; kB/MB/GB powers of 1000).
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ReplaceAll(s, "_", ""))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult := map[string]int64{"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if num == "" || err != nil || mult == 0 {
		return 0, fmt.Errorf("want a size such as 1048576, 512KiB, 128MiB or 1GiB, got %q", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

func formatBytes(n int64) string {
	switch {
	case n == math.MaxInt64:
		return "unlimited"
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

// envRef is a scalar written as ${VAR} or ${VAR:-default}, interpolated
// before the YAML is parsed.
const envRef = `^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$`

func orEnv(s map[string]any) map[string]any {
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "string", "pattern": envRef}}}
}

// sizeSchema is a byte size: a number of bytes or "128MiB".
func sizeSchema(desc string, def string) map[string]any {
	return map[string]any{"type": []string{"integer", "string"}, "description": desc, "default": def}
}

// columnarJSONSchema is the JSON Schema (for `weir schema`) of a columnar
// sink's options: the shared ones plus extra.
func columnarJSONSchema(doc string, extra map[string]any) map[string]any {
	columnType := map[string]any{
		"description": "a type: string, int64, float64, bool, timestamp(ms), timestamp(us), date, list<T>, struct<name: T, ...>, " +
			"with ! for not null (int64!); or a mapping for a nested struct",
		"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "object", "minProperties": 1}},
	}
	props := map[string]any{
		"path": map[string]any{"type": "string", "minLength": 1,
			"description": "output directory (out/lake), or out/events.arrow for directory out and file stem events; \"-\" (arrow only) streams to standard output"},
		"schema": map[string]any{"type": "object", "minProperties": 1, "additionalProperties": columnType,
			"description": "column name: type, in column order; absent: inferred from the first record and then fixed"},
		"partition_by": map[string]any{"type": "string",
			"description": "partition directory template, Hive style: \"dt={{ date(ts) }}/hour={{ hour(ts) }}\""},
		"prefix":         map[string]any{"type": "string", "description": "file name stem; default part"},
		"max_open_files": orEnv(map[string]any{"type": "integer", "minimum": 1, "maximum": 100000, "default": 100, "description": "partitions open at once; the least recently written one is rolled"}),
		"max_file_bytes": sizeSchema("roll a part at this size", "256MiB"),
		"max_file_age": map[string]any{"anyOf": []any{map[string]any{"$ref": "#/$defs/duration"}, map[string]any{"const": "0"}, map[string]any{"const": 0}},
			"description": "roll a part this long after it was opened (wall clock); 0: never"},
		"max_buffer_bytes": sizeSchema("buffered rows across open parts; past it the largest buffer is written out", "64MiB"),
		"max_value_bytes":  sizeSchema("longest string value accepted; longer is a schema error", "1MiB"),
		"unknown_fields": map[string]any{"enum": []string{"ignore", "reject"}, "default": "ignore",
			"description": "record fields that are not columns: ignore them, or reject the record"},
	}
	for k, v := range extra {
		props[k] = v
	}
	return map[string]any{"type": "object", "description": doc, "required": []string{"path"},
		"additionalProperties": false, "properties": props}
}

// columnarOutDir returns the output directory and file name stem of a
// columnar sink's path: the path itself and "part", or for a path that
// ends in .<ext> its directory and the name before the extension.
func columnarOutDir(p, ext string) (dir, stem string) {
	p = filepath.Clean(p)
	if base := filepath.Base(p); strings.HasSuffix(base, "."+ext) && len(base) > len(ext)+1 {
		return filepath.Dir(p), strings.TrimSuffix(base, "."+ext)
	}
	return p, "part"
}

// OwnedOutput implements pipeline.OutputOwner: the output directory.
func (c *ParquetConfig) OwnedOutput() (pipeline.OwnedOutput, bool) {
	dir, _ := columnarOutDir(c.Path, "parquet")
	return pipeline.OwnedOutput{Path: dir, Tree: true}, c.Path != ""
}

// OwnedOutput implements pipeline.OutputOwner: the output directory; none
// when streaming to stdout.
func (c *ArrowConfig) OwnedOutput() (pipeline.OwnedOutput, bool) {
	dir, _ := columnarOutDir(c.Path, "arrow")
	return pipeline.OwnedOutput{Path: dir, Tree: true}, c.Path != "" && c.Path != "-"
}

// OutputPath implements pipeline.OutputPather (for parquet and arrow, whose
// configurations embed ColumnarOptions): the output directory or file;
// empty when streaming to stdout.
func (o *ColumnarOptions) OutputPath() string {
	if o.Path == "-" {
		return ""
	}
	return o.Path
}
