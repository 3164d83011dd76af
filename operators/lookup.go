package operators

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/weirhq/weir/internal/connect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterOperator("lookup", "enrich records from a table: a CSV or JSON-lines file, a PostgreSQL query or Redis", func() *LookupConfig {
		return &LookupConfig{OnMiss: "keep"}
	})
}

// LookupConfig is the `lookup:` operator, an enrichment (lookup) join of
// each record against a table:
//
//   - lookup:
//     table:                          # exactly one of file, postgres, redis
//     file: { path: hosts.csv, key: host }          # lookup_file.go
//     # postgres: { dsn: ..., query: "select ...", key: id, refresh: 1m }
//     # redis: { url: redis://127.0.0.1:6379, key: "host:{{ host }}", type: hash }
//     key: host                       # expression on the record
//     fields: { rack: rack, dc: datacenter }   # output name: table column; default every column
//     on_miss: keep                   # keep (default) | drop | dead_letter
//
// A record's key is matched by its text: a string as it is, a whole number
// in decimal (42 and 42.0 are "42"), true/false, a time in RFC 3339; a
// file's or query's key column is read the same way. A key that is null
// (a missing field) finds nothing and is a miss; a key that cannot be
// computed (the expression fails, or it is a list or an object) sends the
// record to the dead-letter output with reason "lookup_key". On a hit the
// fields are set on the record (a column the row lacks is left alone); on a
// miss the record passes unchanged (keep), is dropped (drop), or goes to
// the dead-letter output with reason "lookup_miss" (dead_letter).
//
// The table is loaded before the first record (file and PostgreSQL tables
// while the operator is built, so a table that does not load stops the
// start with its error). A reload that fails keeps the last good table and
// is logged.
type LookupConfig struct {
	// Table is where rows are looked up.
	Table LookupTable
	// Key computes the key of a record. Required, except for a redis
	// table whose key is a template.
	Key *pipeline.Expr
	// Fields maps output field names to table columns, in order; empty:
	// every column, under its own name.
	Fields LookupFields
	// OnMiss is keep, drop or dead_letter.
	OnMiss string
}

// LookupTable is the `table:` of a lookup: exactly one kind is set.
type LookupTable struct {
	File     *LookupFileConfig
	Postgres *LookupPostgresConfig
	Redis    *LookupRedisConfig
}

// LookupFields is the `fields:` mapping, in the order written.
type LookupFields struct {
	Names   []string // output field names
	Columns []string // the table column of each
}

// UnmarshalYAML decodes the lookup mapping, reporting every problem at its
// position.
func (c *LookupConfig) UnmarshalYAML(n ast.Node) error {
	pairs, err := yamlMapping(n, "lookup")
	if err != nil {
		return err
	}
	var errs pipeline.ConfigErrors
	var tableNode ast.Node
	for _, p := range pairs {
		var err error
		switch p.key {
		case "table":
			tableNode = p.kn
			err = c.Table.decode(p)
		case "key":
			c.Key, err = p.expr("lookup: key")
		case "fields":
			err = c.Fields.decode(p)
		case "on_miss":
			var s string
			if s, err = p.scalar("lookup: on_miss"); err == nil {
				if s != "keep" && s != "drop" && s != "dead_letter" {
					err = configErr(p.at(), "lookup: on_miss: %q is not one of keep, drop, dead_letter", s)
				}
				c.OnMiss = s
			}
		default:
			err = configErr(p.kn, "lookup: unknown key %q (want %s)", p.key, knownKeys("table", "key", "fields", "on_miss"))
		}
		errs = appendConfigErr(errs, err, p.at())
	}
	if len(errs) == 0 {
		switch {
		case tableNode == nil:
			errs = append(errs, configErr(n, "lookup: needs `table:`, with file, postgres or redis"))
		case c.Key == nil && (c.Table.Redis == nil || c.Table.Redis.Key.IsConstant()):
			errs = append(errs, configErr(n, "lookup: needs `key:`, an expression on the record such as customer_id"))
		}
	}
	if c.Table.Redis != nil && len(errs) == 0 {
		errs = appendConfigErr(errs, c.Table.Redis.checkFields(c.Fields), tableNode)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// decode reads `table: {file|postgres|redis: {...}}`.
func (t *LookupTable) decode(p yamlPair) error {
	pairs, err := yamlMapping(p.value, "lookup: table")
	if err != nil {
		return err
	}
	if len(pairs) != 1 {
		return configErr(p.at(), "lookup: table: want exactly one of file, postgres, redis, got %d keys", len(pairs))
	}
	q := pairs[0]
	switch q.key {
	case "file":
		t.File = newLookupFileConfig()
		return t.File.decode(q)
	case "postgres":
		t.Postgres = newLookupPostgresConfig()
		return t.Postgres.decode(q)
	case "redis":
		t.Redis = newLookupRedisConfig()
		return t.Redis.decode(q)
	}
	return configErr(q.kn, "lookup: table: unknown kind %q (want file, postgres or redis)", q.key)
}

// decode reads `fields: {out: column, ...}`.
func (f *LookupFields) decode(p yamlPair) error {
	pairs, err := yamlMapping(p.value, "lookup: fields")
	if err != nil {
		return err
	}
	for _, q := range pairs {
		col, err := q.scalar("lookup: fields: " + q.key)
		if err != nil {
			return err
		}
		name, err := pipeline.FieldNameOf(q.key)
		if err != nil {
			return configErr(q.kn, "lookup: fields: %q: %v", q.key, err)
		}
		if col == "" {
			return configErr(q.at(), "lookup: fields: %s: want a column name", q.key)
		}
		f.Names, f.Columns = append(f.Names, name), append(f.Columns, col)
	}
	if len(f.Names) == 0 {
		return configErr(p.at(), "lookup: fields: want at least one `name: column` (leave fields out for every column)")
	}
	return nil
}

// decodeTable decodes a table kind's options (a struct with yaml tags)
// at their positions; what is "file", "postgres" or "redis".
func decodeTable(q yamlPair, what string, v interface{ check() error }) error {
	if q.value == nil {
		return configErr(q.kn, "lookup: table: %s: expected a mapping", what)
	}
	if err := pipeline.DecodeNode(q.value, v); err != nil {
		var ce *pipeline.ConfigError
		if errors.As(err, &ce) {
			return prefixConfigErr(ce, "lookup: table: "+what)
		}
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			p := ye.GetToken().Position
			msg := ye.GetMessage()
			if strings.HasPrefix(msg, "unknown field") {
				msg += " (want " + knownKeys(yamlTags(v)...) + ")"
			}
			return &pipeline.ConfigError{Pos: pipeline.Pos{Line: p.Line, Column: p.Column}, Msg: "lookup: table: " + what + ": " + msg}
		}
		return configErr(q.value, "lookup: table: %s: %v", what, err)
	}
	if err := v.check(); err != nil {
		return configErr(q.kn, "lookup: table: %s: %v", what, err)
	}
	return nil
}

// yamlTags lists the yaml keys of the struct v points to.
func yamlTags(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var keys []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// Validate implements pipeline.Validator: a file table is read now, so
// that `weir validate` reports a table that does not parse with its path
// and line.
func (c *LookupConfig) Validate() error {
	switch {
	case c.Table.File != nil:
		if err := c.Table.File.check(); err != nil {
			return fmt.Errorf("lookup: table: file: %w", err)
		}
		idx, err := c.Table.File.preload()
		if err != nil {
			return fmt.Errorf("lookup: %w", err)
		}
		return checkColumns(idx, c.Fields)
	case c.Table.Postgres != nil:
		return c.Table.Postgres.check()
	case c.Table.Redis != nil:
		return c.Table.Redis.check()
	}
	return errors.New("lookup: needs `table:`, with file, postgres or redis")
}

// DeclaredFields implements pipeline.FieldDeclarer: lookup adds its
// named fields (without `fields:`, the table's columns, unknown here)
// and keeps the record's others.
func (c *LookupConfig) DeclaredFields() ([]string, bool) {
	return c.Fields.Names, false
}

// NewOperator implements pipeline.OperatorConfig. File and PostgreSQL
// tables are loaded here, before the first record.
func (c *LookupConfig) NewOperator(b pipeline.Build) (pipeline.Operator, error) {
	l := &lookup{id: b.Component, onMiss: lookupMissOf(c.OnMiss), fields: c.Fields}
	if c.Key != nil {
		k := newValueSource(c.Key).clone()
		l.key = &k
	}
	logger := b.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var err error
	switch {
	case c.Table.File != nil:
		l.mem, err = c.Table.File.open(b, logger)
	case c.Table.Postgres != nil:
		l.mem, err = c.Table.Postgres.open(b, logger)
	case c.Table.Redis != nil:
		l.redis, err = c.Table.Redis.open(b, logger, c.Fields)
	default:
		err = errors.New("lookup: no table")
	}
	if err != nil {
		return nil, err
	}
	if l.mem != nil {
		if err := checkColumns(l.mem.current(), c.Fields); err != nil {
			l.mem.close()
			return nil, err
		}
	}
	return l, nil
}

// checkColumns refuses `fields:` naming a column that a table with fixed
// columns (CSV, a query) does not have.
func checkColumns(idx *lookupIndex, f LookupFields) error {
	if idx == nil || !idx.fixed {
		return nil
	}
	for i, col := range f.Columns {
		if _, ok := idx.colIndex[col]; !ok {
			return fmt.Errorf("lookup: fields: %s: table %s has no column %q (it has %s)", f.Names[i], idx.source, col, knownKeys(idx.columns...))
		}
	}
	return nil
}

type lookupMiss uint8

const (
	missKeep lookupMiss = iota
	missDrop
	missDeadLetter
)

func lookupMissOf(s string) lookupMiss {
	switch s {
	case "drop":
		return missDrop
	case "dead_letter":
		return missDeadLetter
	}
	return missKeep
}

// lookupIndex is one version of an in-memory table (file, query): rows by
// key text. It is immutable once published: a reload builds a new one and
// swaps it in whole, so a batch sees one version from start to end.
type lookupIndex struct {
	source   string           // for messages: the path, or "postgres query"
	columns  []string         // column names, in table order
	colIndex map[string]int   // column name → index in columns
	fixed    bool             // every row has every column (CSV, query): fields are checked against columns
	rows     map[string][]any // key text → values by column; lookupAbsent where a row lacks a column
	dups     int              // rows whose key an earlier row had (the last one wins)
}

// lookupAbsent marks a column that a row does not have (a JSON line without
// that member): the output field is left alone.
type lookupAbsentType struct{}

var lookupAbsent any = lookupAbsentType{}

// column returns the index of name, adding it when new.
func (x *lookupIndex) column(name string) int {
	if i, ok := x.colIndex[name]; ok {
		return i
	}
	x.colIndex[name] = len(x.columns)
	x.columns = append(x.columns, name)
	return len(x.columns) - 1
}

// lookupProjection is which columns of an index go to which output fields.
type lookupProjection struct {
	idx   *lookupIndex
	names []string
	cols  []int
}

func newLookupProjection(idx *lookupIndex, f LookupFields) *lookupProjection {
	p := &lookupProjection{idx: idx}
	if len(f.Names) == 0 {
		p.names = idx.columns
		for i := range idx.columns {
			p.cols = append(p.cols, i)
		}
		return p
	}
	for i, name := range f.Names {
		c, ok := idx.colIndex[f.Columns[i]]
		if !ok {
			continue // a column no row has (yet): nothing to set
		}
		p.names, p.cols = append(p.names, name), append(p.cols, c)
	}
	return p
}

// apply sets the projected columns of row on fs.
func (p *lookupProjection) apply(fs *pipeline.Fields, row []any) {
	for i, c := range p.cols {
		if c >= len(row) {
			continue
		}
		if v := row[c]; v != lookupAbsent {
			fs.Set(p.names[i], v)
		}
	}
}

// lookup is the running operator. It runs on one goroutine; the table
// behind mem is swapped by its reloader, read once per batch.
type lookup struct {
	id     string
	key    *valueSource // nil: a redis table keyed by its template alone
	onMiss lookupMiss
	fields LookupFields
	mem    *lookupMemTable // file or postgres
	redis  *lookupRedis

	proj *lookupProjection // for mem's current index
	x    value             // scratch
	buf  []byte            // scratch key text
}

// Process implements pipeline.Operator.
func (l *lookup) Process(ctx context.Context, b *pipeline.Batch) error {
	if l.redis != nil {
		return l.processRedis(ctx, b)
	}
	idx := l.mem.current()
	if l.proj == nil || l.proj.idx != idx {
		l.proj = newLookupProjection(idx, l.fields)
	}
	out := b.Records[:0]
	for _, r := range b.Records {
		key, null, err := l.keyText(r)
		if err != nil {
			b.Reject(r, l.id, "lookup_key", err)
			continue
		}
		var row []any
		found := false
		if !null {
			row, found = idx.rows[key]
		}
		if found {
			l.proj.apply(r.Fields(), row)
			out = append(out, r)
			continue
		}
		if l.miss(b, r, key, null) {
			out = append(out, r)
		}
	}
	clear(b.Records[len(out):])
	b.Records = out
	return nil
}

// miss applies on_miss to r and reports whether r is kept.
func (l *lookup) miss(b *pipeline.Batch, r *pipeline.Record, key string, null bool) bool {
	switch l.onMiss {
	case missDrop:
		return false
	case missDeadLetter:
		if null {
			b.Reject(r, l.id, "lookup_miss", fmt.Errorf("lookup: the key %s is null", l.key.text))
		} else {
			b.Reject(r, l.id, "lookup_miss", fmt.Errorf("lookup: no row for key %q", key))
		}
		return false
	}
	return true
}

// keyText computes r's key as text. The string aliases l.buf or the
// record's bytes: valid until the next call. null is true for a null key.
func (l *lookup) keyText(r *pipeline.Record) (key string, null bool, err error) {
	if err := l.key.read(r, &l.x); err != nil {
		return "", false, fmt.Errorf("lookup: key: %w", err)
	}
	x := &l.x
	switch x.Kind {
	case pipeline.ScalarNull:
		return "", true, nil
	case pipeline.ScalarString:
		return x.Str, false, nil
	case pipeline.ScalarInt:
		l.buf = strconv.AppendInt(l.buf[:0], x.Int, 10)
	case pipeline.ScalarFloat:
		l.buf = appendLookupFloat(l.buf[:0], x.Float)
	case pipeline.ScalarBool:
		l.buf = strconv.AppendBool(l.buf[:0], x.Bool)
	default:
		if x.v == nil {
			return "", true, nil
		}
		var ok bool
		if l.buf, ok = appendLookupKey(l.buf[:0], x.v); !ok {
			return "", false, fmt.Errorf("lookup: key %s: %s is not a key (want a string, number, boolean or time)", l.key.text, parseDescribeValue(x.v))
		}
	}
	return unsafe.String(unsafe.SliceData(l.buf), len(l.buf)), false, nil
}

// appendLookupKey appends the text a key value is matched by; ok is false
// for values that are not keys (lists, objects). nil appends nothing.
func appendLookupKey(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return dst, true
	case string:
		return append(dst, x...), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case float64:
		return appendLookupFloat(dst, x), true
	case float32:
		return appendLookupFloat(dst, float64(x)), true
	case time.Time:
		return x.UTC().AppendFormat(dst, pipeline.TimeLayout), true
	case []byte:
		return append(dst, x...), true
	case []any, map[string]any:
		return dst, false
	}
	if _, i, isInt, ok := toNumber(v); ok && isInt {
		return strconv.AppendInt(dst, i, 10), true
	} else if f, _, _, ok := toNumber(v); ok {
		return appendLookupFloat(dst, f), true
	}
	return pipeline.AppendText(dst, v), true
}

// appendLookupFloat writes a whole number as an integer (42.0 is "42"),
// others in the shortest form that reads back.
func appendLookupFloat(dst []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return strconv.AppendInt(dst, int64(f), 10)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// Close implements the runtime's closer: it stops the table's reloader
// and closes its connections.
func (l *lookup) Close(context.Context) error {
	if l.mem != nil {
		l.mem.close()
	}
	if l.redis != nil {
		l.redis.close()
	}
	return nil
}

// lookupMemTable is an in-memory table (file, query) and its reloader: a
// goroutine that polls for a new version every interval and swaps it in.
type lookupMemTable struct {
	idx  atomic.Pointer[lookupIndex] // the last good version; swapped whole
	stop chan struct{}               // closed by close
	done chan struct{}               // closed when the reloader has returned
	once sync.Once
	// after runs once the reloader has returned (closing the loader's
	// connection); set before the reloader can stop.
	after func()
}

// startLookupMemTable publishes first and starts polling: poll returns a
// new version, nil when nothing changed, or an error, which is logged
// (once until it changes) while the last good version stays. After an
// error the next poll comes sooner, with backoff, up to interval.
func startLookupMemTable(first *lookupIndex, interval time.Duration, logger *slog.Logger, component string, poll func() (*lookupIndex, error)) *lookupMemTable {
	t := &lookupMemTable{stop: make(chan struct{}), done: make(chan struct{})}
	t.idx.Store(first)
	if first.dups > 0 {
		logger.Warn("lookup: keys appear more than once in the table; the last row of each wins", "table", first.source, "repeated", first.dups)
	}
	go func() {
		defer close(t.done)
		bo := connect.Backoff{Min: min(100*time.Millisecond, interval), Max: interval}
		wait := interval
		lastErr := ""
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-timer.C:
			}
			idx, err := poll()
			switch {
			case err != nil:
				if msg := err.Error(); msg != lastErr {
					logger.Warn("lookup: reloading the table failed; keeping the last good one", "table", t.idx.Load().source, "err", err)
					lastErr = msg
				}
				wait = bo.Next()
			case idx != nil:
				t.idx.Store(idx)
				logger.Info("lookup: table reloaded", "table", idx.source, "rows", len(idx.rows))
				if idx.dups > 0 {
					logger.Warn("lookup: keys appear more than once in the table; the last row of each wins", "table", idx.source, "repeated", idx.dups)
				}
				lastErr = ""
				bo.Reset()
				wait = interval
			default:
				lastErr = ""
				bo.Reset()
				wait = interval
			}
			timer.Reset(wait)
		}
	}()
	return t
}

// current returns the table's last good version.
func (t *lookupMemTable) current() *lookupIndex { return t.idx.Load() }

// onClose sets what close runs after the reloader has stopped.
func (t *lookupMemTable) onClose(f func()) *lookupMemTable {
	t.after = f
	return t
}

// close stops the reloader, waits for it, then runs onClose's function.
func (t *lookupMemTable) close() {
	t.once.Do(func() {
		close(t.stop)
		<-t.done
		if t.after != nil {
			t.after()
		}
	})
}
