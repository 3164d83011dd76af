package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Pos is a position in a configuration file. Line and Column are 1-based;
// zero means unknown.
type Pos struct {
	File   string
	Line   int
	Column int
}

func (p Pos) String() string {
	switch {
	case p.Line == 0 && p.File == "":
		return "<config>"
	case p.Line == 0:
		return p.File
	}
	f := p.File
	if f == "" {
		f = "<config>"
	}
	return fmt.Sprintf("%s:%d:%d", f, p.Line, p.Column)
}

// Add returns p moved n columns right (for positions inside a scalar).
func (p Pos) Add(n int) Pos {
	if p.Line > 0 {
		p.Column += n
	}
	return p
}

// ConfigError is one problem in a configuration, at a position.
type ConfigError struct {
	Pos Pos
	Msg string
}

func (e *ConfigError) Error() string { return e.Pos.String() + ": " + e.Msg }

// ConfigErrors is every problem found in one configuration, in file order.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Config is a whole configuration file.
type Config struct {
	File      string
	DataDir   string // data_dir; default ./.weir
	HTTP      string // http admin address; empty = off
	Pipelines []*Spec
	// Warnings are problems weir read past: each names what it assumed and
	// how to write it so that it is not needed (see quoteExpressions).
	Warnings []*ConfigError
}

// Spec is one pipeline of a configuration.
type Spec struct {
	Name      string
	Pos       Pos
	Guarantee Guarantee
	// CheckpointInterval is how often a checkpoint is taken; default 1s.
	CheckpointInterval time.Duration
	// BatchSize is the most records a source reads into one batch; default 1024.
	BatchSize int
	// WALSync is the fsync policy of the ingest WAL: always, interval or none.
	WALSync   string
	Sources   []*Component
	Operators []*Component
	Sinks     []*Component
	// DeadLetter is the dead-letter sink; nil means dead letters are
	// counted and logged, not written.
	DeadLetter *Component
	// Tests holds the `tests:` node, for `weir test`; nil when absent.
	Tests ast.Node
	// Restart is what the supervisor does when the pipeline fails.
	Restart Restart
	// Timezone is the IANA zone of date, hour and format_time called
	// without one; "" is UTC.
	Timezone string

	written *Spec // before it was split at its repartitions; see AsWritten
}

// Component is one configured source, operator or sink.
type Component struct {
	Kind   Kind
	Name   string // registry name, e.g. "file"
	ID     string // "sources[0]/file", unique within its pipeline
	Pos    Pos
	Entry  *Entry
	Config any // *XxxConfig from Entry.NewConfig, decoded and validated

	node ast.Node // its configuration, for the components a repartition derives from it
}

var pipelineName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// LoadFile reads, interpolates and validates a configuration file against
// the Default registry.
func LoadFile(path string) (*Config, error) { return Default.LoadFile(path) }

// LoadFile reads, interpolates and validates a configuration file.
func (r *Registry) LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: read config: %w", err)
	}
	return r.Load(path, data)
}

// Load parses and validates a configuration. Every problem found is
// returned together, as ConfigErrors, each with file:line:column.
func (r *Registry) Load(file string, data []byte) (*Config, error) {
	text, err := Interpolate(file, string(data), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	f, warnings, err := ParseYAML(file, text)
	if err != nil {
		return nil, ConfigErrors{toConfigError(file, err, Pos{File: file})}
	}
	l := &loader{file: file, reg: r}
	cfg := &Config{File: file, DataDir: "./.weir", Warnings: warnings}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		return nil, ConfigErrors{{Pos: Pos{File: file, Line: 1, Column: 1}, Msg: "empty configuration: expected a mapping with `pipelines:`"}}
	}
	l.top(f.Docs[0].Body, cfg)
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	cfg.Warnings = append(cfg.Warnings, l.warns...)
	return cfg, nil
}

type loader struct {
	file  string
	reg   *Registry
	errs  ConfigErrors
	warns []*ConfigError
}

func (l *loader) pos(n ast.Node) Pos {
	if n == nil || n.GetToken() == nil {
		return Pos{File: l.file}
	}
	p := n.GetToken().Position
	return Pos{File: l.file, Line: p.Line, Column: p.Column}
}

func (l *loader) errorf(n ast.Node, format string, args ...any) {
	l.errs = append(l.errs, &ConfigError{Pos: l.pos(n), Msg: fmt.Sprintf(format, args...)})
}

type pair struct {
	key   string
	kn    ast.Node
	value ast.Node // nil for `key:` with no value
}

// pairs returns the key/value pairs of a mapping node, or reports an error.
func (l *loader) pairs(n ast.Node, what string) ([]pair, bool) {
	kvs, ok := Mapping(n)
	if !ok {
		l.errorf(n, "%s: expected a mapping, got %s", what, describe(n))
		return nil, false
	}
	out := make([]pair, 0, len(kvs))
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] {
			l.errorf(kv.KeyNode, "%s: duplicate key %q", what, kv.Key)
			continue
		}
		seen[kv.Key] = true
		out = append(out, pair{key: kv.Key, kn: kv.KeyNode, value: kv.Value})
	}
	return out, true
}

func describe(n ast.Node) string {
	switch Unwrap(n).(type) {
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case nil, *ast.NullNode:
		return "nothing"
	}
	return fmt.Sprintf("%q", n.GetToken().Value)
}

func (l *loader) top(n ast.Node, cfg *Config) {
	ps, ok := l.pairs(n, "configuration")
	if !ok {
		return
	}
	var pipelines ast.Node
	for _, p := range ps {
		switch p.key {
		case "data_dir":
			cfg.DataDir = l.str(p)
		case "http":
			cfg.HTTP = l.str(p)
		case "pipelines":
			pipelines = p.value
			if pipelines == nil {
				pipelines = p.kn
			}
		default:
			l.errorf(p.kn, "unknown key %q (want data_dir, http, pipelines)", p.key)
		}
	}
	if pipelines == nil {
		l.errorf(n, "missing `pipelines:`")
		return
	}
	seq, ok := Unwrap(pipelines).(*ast.SequenceNode)
	if !ok || len(seq.Values) == 0 {
		l.errorf(pipelines, "pipelines: expected a list of pipelines, got %s", describe(pipelines))
		return
	}
	names := map[string]Pos{}
	for _, pn := range seq.Values {
		s := l.pipeline(pn)
		if s == nil {
			continue
		}
		if prev, dup := names[s.Name]; dup && s.Name != "" {
			l.errs = append(l.errs, &ConfigError{Pos: s.Pos, Msg: fmt.Sprintf("duplicate pipeline name %q (first at %s)", s.Name, prev)})
			continue
		}
		names[s.Name] = s.Pos
		for _, stage := range l.splitRepartitions(s) {
			l.warnTaskKeys(stage)
			cfg.Pipelines = append(cfg.Pipelines, stage)
		}
	}
	l.checkSharedOutputs(cfg.Pipelines)
}

// checkSharedOutputs refuses two sinks (dead-letter outputs included), in
// one pipeline or two, that write the same output path: each commits as
// if it were the only writer, and one's records would be lost.
func (l *loader) checkSharedOutputs(specs []*Spec) {
	type owner struct {
		pipeline, id string
		pos          Pos
	}
	seen := map[string]owner{}
	for _, s := range specs {
		sinks := append([]*Component(nil), s.Sinks...)
		if s.DeadLetter != nil {
			sinks = append(sinks, s.DeadLetter)
		}
		for _, c := range sinks {
			o, ok := c.Config.(OutputPather)
			if !ok {
				continue
			}
			p := o.OutputPath()
			if p == "" {
				continue
			}
			p = filepath.Clean(p)
			if prev, dup := seen[p]; dup {
				l.errs = append(l.errs, &ConfigError{Pos: c.Pos, Msg: fmt.Sprintf(
					"pipeline %q: %s writes to %s, as does %s of pipeline %q (%s): two writers of one output lose each other's records; give each its own path",
					s.Name, c.ID, p, prev.id, prev.pipeline, prev.pos)})
				continue
			}
			seen[p] = owner{s.Name, c.ID, c.Pos}
		}
	}
}

func (l *loader) str(p pair) string {
	switch v := p.value.(type) {
	case nil:
		return ""
	case *ast.StringNode:
		return v.Value
	case ast.ScalarNode:
		return v.GetToken().Value
	}
	l.errorf(p.value, "%s: expected a string, got %s", p.key, describe(p.value))
	return ""
}

func (l *loader) pipeline(n ast.Node) *Spec {
	s := &Spec{Pos: l.pos(n), Guarantee: ExactlyOnce, CheckpointInterval: time.Second, BatchSize: DefaultBatchSize, WALSync: "always", Restart: DefaultRestart}
	ps, ok := l.pairs(n, "pipeline")
	if !ok {
		return nil
	}
	var namePos ast.Node
	items := map[string]int{} // list items written, decoded or not
	for _, p := range ps {
		switch p.key {
		case "name":
			s.Name, namePos = l.str(p), p.value
			if p.value != nil {
				s.Pos = l.pos(p.value)
			}
		case "guarantee":
			g := Guarantee(l.str(p))
			switch g {
			case ExactlyOnce, AtLeastOnce, AtMostOnce:
				s.Guarantee = g
			default:
				l.errorf(valueOr(p), "guarantee: %q is not one of exactly_once, at_least_once, at_most_once", g)
			}
		case "checkpoint_interval":
			d, err := time.ParseDuration(l.str(p))
			if err != nil || d <= 0 {
				l.errorf(valueOr(p), "checkpoint_interval: want a positive duration such as 1s or 500ms, got %q", l.str(p))
			}
			s.CheckpointInterval = d
		case "batch_size":
			v, err := strconv.Atoi(l.str(p))
			if err != nil || v < 1 || v > 1<<20 {
				l.errorf(valueOr(p), "batch_size: want a whole number from 1 to 1048576, got %q", l.str(p))
			}
			s.BatchSize = v
		case "wal_sync":
			switch v := l.str(p); v {
			case "always", "interval", "none":
				s.WALSync = v
			default:
				l.errorf(valueOr(p), "wal_sync: %q is not one of always, interval, none", v)
			}
		case "sources":
			s.Sources, items[p.key] = l.components(p, KindSource)
		case "operators":
			s.Operators, _ = l.components(p, KindOperator)
		case "sinks":
			s.Sinks, items[p.key] = l.components(p, KindSink)
		case "dead_letter":
			if p.value == nil {
				continue
			}
			if c := l.component(p.value, KindSink, "dead_letter"); c != nil {
				s.DeadLetter = c
			}
		case "tests":
			s.Tests = p.value
		case "restart":
			s.Restart = l.restart(p)
		case "timezone":
			s.Timezone = l.timezone(p)
		default:
			l.errorf(p.kn, "pipeline: unknown key %q (want name, guarantee, checkpoint_interval, batch_size, wal_sync, restart, timezone, sources, operators, sinks, dead_letter, tests)", p.key)
		}
	}
	switch {
	case namePos == nil:
		l.errorf(n, "pipeline: missing `name:`")
	case !pipelineName.MatchString(s.Name):
		l.errorf(namePos, "pipeline name %q: use only a-z, 0-9, _ and -", s.Name)
	}
	// A list whose items failed to decode was reported item by item.
	if items["sources"] == 0 {
		l.errorf(n, "pipeline %q: needs at least one source", s.Name)
	}
	if items["sinks"] == 0 {
		l.errorf(n, "pipeline %q: needs at least one sink", s.Name)
	}
	if s.Guarantee == ExactlyOnce {
		for _, c := range append(append([]*Component(nil), s.Sinks...), s.DeadLetter) {
			if c != nil && c.Entry != nil && !c.Entry.ExactlyOnce {
				l.errs = append(l.errs, &ConfigError{Pos: c.Pos, Msg: fmt.Sprintf(
					"pipeline %q: sink %q cannot commit idempotently, so exactly_once cannot be kept; use `guarantee: at_least_once`, or a sink that commits (file, kafka, postgres, parquet, arrow)", s.Name, c.Name)})
			}
		}
	}
	l.warnBareWords(s) // task keys are checked per stage, once repartitions are split (top)
	if s.Timezone != "" {
		setZone(s, s.Timezone)
	}
	for _, c := range s.Sources {
		if w, ok := c.Config.(GuaranteeWarner); ok {
			if msg := w.GuaranteeWarning(s.Guarantee); msg != "" {
				l.warns = append(l.warns, &ConfigError{Pos: c.Pos, Msg: fmt.Sprintf("pipeline %q: %s", s.Name, msg)})
			}
		}
	}
	return s
}

// warnTaskKeys checks, for a pipeline whose partitions are tasks, that
// keyed state can be kept per partition: it refuses a keyed operator whose
// key is not aligned with the partitioning the sources declare
// (partitioned_by), and warns where a source does not declare it.
func (l *loader) warnTaskKeys(s *Spec) {
	keys := s.PartitionKeys()
	if s.TaskStoreIndex() < 0 || len(keys) == 0 {
		return
	}
	for _, c := range s.Operators {
		k, ok := c.Config.(KeyedConfig)
		if !ok || k.KeyedBy() == "" {
			continue
		}
		for _, key := range keys {
			switch {
			case key == "":
				l.warns = append(l.warns, &ConfigError{Pos: c.Pos, Msg: fmt.Sprintf(
					"pipeline %q: %s keeps its state in this process, not per Kafka partition: weir cannot know that every record with the same %s is in one partition, so when a partition moves to another process (scale-out) its state does not follow it. If the producer keys records by it, declare that with `partitioned_by:` on the kafka source: the state then moves with its partition, exactly once",
					s.Name, c.ID, k.KeyedBy())})
			case !k.AlignedWith(key):
				l.errs = append(l.errs, &ConfigError{Pos: c.Pos, Msg: fmt.Sprintf(
					"pipeline %q: %s keeps its state per Kafka partition, but its %s is not aligned with the partitions (partitioned_by: %s): records of one key are spread over partitions, and each would hold a partial result. Include %s in the key, or re-key the stream first, with `- repartition: {topic: <name>, key: <a field of its %s>}` before this operator",
					s.Name, c.ID, k.KeyedBy(), key, key, k.KeyedBy())})
			}
		}
	}
}

func valueOr(p pair) ast.Node {
	if p.value != nil {
		return p.value
	}
	return p.kn
}

// components decodes a list of components; it also returns how many items
// the list had, decoded or not.
func (l *loader) components(p pair, kind Kind) ([]*Component, int) {
	if p.value == nil {
		return nil, 0
	}
	seq, ok := p.value.(*ast.SequenceNode)
	if !ok {
		l.errorf(p.value, "%s: expected a list, got %s", p.key, describe(p.value))
		return nil, 1
	}
	var out []*Component
	for i, item := range seq.Values {
		if c := l.component(item, kind, fmt.Sprintf("%s[%d]", p.key, i)); c != nil {
			out = append(out, c)
		}
	}
	return out, len(seq.Values)
}

// component decodes `{name: config}` into the registered config type.
func (l *loader) component(n ast.Node, kind Kind, where string) *Component {
	ps, ok := l.pairs(n, where)
	if !ok {
		return nil
	}
	if len(ps) != 1 {
		at := n
		if len(ps) > 0 {
			at = ps[0].kn
		}
		l.errorf(at, "%s: expected one %s, such as `{%s: {...}}`, got %d keys", where, kind, example(kind), len(ps))
		return nil
	}
	p := ps[0]
	e, ok := l.reg.Lookup(kind, p.key)
	if !ok {
		l.errorf(p.kn, "%s: unknown %s %q (known: %s)", where, kind, p.key, strings.Join(l.reg.Names(kind), ", "))
		return nil
	}
	c := &Component{Kind: kind, Name: p.key, ID: where + "/" + p.key, Pos: l.pos(p.kn), Entry: e, Config: e.NewConfig(), node: p.value}
	if p.value != nil {
		cfg, errs := l.decodeComponent(p.value, e)
		if errs != nil {
			l.errs = append(l.errs, errs...)
			return nil
		}
		c.Config = cfg
	}
	if v, ok := c.Config.(Validator); ok {
		if err := v.Validate(); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				if ce.Pos.File == "" {
					ce.Pos.File = l.file
				}
				if ce.Pos.Line == 0 {
					ce.Pos = c.Pos
				}
				l.errs = append(l.errs, ce)
			} else if msg := err.Error(); strings.HasPrefix(msg, p.key+":") {
				l.errorf(p.kn, "%s", msg)
			} else {
				l.errorf(p.kn, "%s: %s", p.key, msg)
			}
			return nil
		}
	}
	return c
}

func example(k Kind) string {
	switch k {
	case KindSource:
		return "file"
	case KindOperator:
		return "filter"
	}
	return "stdout"
}

// toConfigError turns a YAML library error, or an error from a config's
// unmarshaler, into a positioned ConfigError.
func toConfigError(file string, err error, fallback Pos) *ConfigError {
	var ce *ConfigError
	if errors.As(err, &ce) {
		if ce.Pos.File == "" {
			ce.Pos.File = file
		}
		return ce
	}
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		p := ye.GetToken().Position
		msg := ye.GetMessage()
		if strings.Contains(msg, "mapping value is not allowed") {
			// The usual cause in a pipeline file: an expression with a
			// ternary, which YAML reads as a nested mapping.
			msg += ` (an expression containing ": ", such as a ? b : c, must be quoted: errors: 'sum(status >= 500 ? 1 : 0)')`
		}
		return &ConfigError{Pos: Pos{File: file, Line: p.Line, Column: p.Column}, Msg: msg}
	}
	return &ConfigError{Pos: fallback, Msg: err.Error()}
}

// scalarString returns a scalar node's text and position, for unmarshalers
// of expression-valued options.
func scalarString(n ast.Node) (string, Pos, error) {
	n = Unwrap(n)
	var pos Pos
	if n != nil && n.GetToken() != nil {
		p := n.GetToken().Position
		pos = Pos{Line: p.Line, Column: p.Column}
	}
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, pos, nil
	case *ast.LiteralNode:
		return v.Value.Value, pos, nil
	case ast.ScalarNode:
		if _, null := v.(*ast.NullNode); !null {
			return v.GetToken().Value, pos, nil
		}
	}
	return "", pos, &ConfigError{Pos: pos, Msg: "expected an expression (a string)"}
}

// NodePos returns the position of a YAML node, for config unmarshalers that
// report their own errors. The file name is filled in by the loader.
func NodePos(n ast.Node) Pos {
	_, pos, _ := scalarString(n)
	if pos.Line == 0 && n != nil && n.GetToken() != nil {
		p := n.GetToken().Position
		pos = Pos{Line: p.Line, Column: p.Column}
	}
	return pos
}

// ExprMap is an ordered mapping of names to expressions, decoded from YAML
// (the `map` operator, aggregate lists). A null value is kept as a nil Expr.
type ExprMap struct {
	Names []string
	Exprs []*Expr
}

// UnmarshalYAML decodes a mapping of name: expression.
func (m *ExprMap) UnmarshalYAML(n ast.Node) error {
	l := &loader{}
	ps, ok := l.pairs(n, "mapping")
	if !ok {
		return l.errs[0]
	}
	for _, p := range ps {
		m.Names = append(m.Names, p.key)
		if p.value == nil {
			m.Exprs = append(m.Exprs, nil)
			continue
		}
		var e Expr
		if err := e.UnmarshalYAML(p.value); err != nil {
			return err
		}
		m.Exprs = append(m.Exprs, &e)
	}
	if len(l.errs) > 0 {
		return l.errs[0]
	}
	return nil
}

// DecodeNode decodes a YAML node into v with weir's strict rules (unknown
// keys refused), for configs that decode part of themselves by hand.
func DecodeNode(n ast.Node, v any) error {
	return yaml.NewDecoder(bytes.NewReader(nil), yaml.DisallowUnknownField()).DecodeFromNode(n, v)
}
