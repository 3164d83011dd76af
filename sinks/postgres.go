package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSink("postgres",
		"write records as rows of a PostgreSQL table (COPY, or INSERT ... ON CONFLICT for upserts); exactly-once by committing rows and epoch in one transaction",
		true, NewPostgresConfig)
}

// PostgresConfig is the `postgres:` sink: each record becomes one row of
// a table.
//
//	sinks:
//	  - postgres: { dsn: "postgres://weir@db:5432/analytics", table: errors_per_minute,
//	                upsert_on: [window_start, service] }
//
// Columns: with `columns: {col: expression}` each column gets its
// expression's value; without, the columns are taken from the table and
// filled from the record fields of the same name. In that case a column
// that has a default (a serial id, `inserted_at default now()`) is written
// only if the first record has a field of that name; the others get NULL
// when a record lacks the field. Values are converted to the column's type
// (numbers, booleans, times from RFC 3339 text or unix s/ms, JSON for
// json/jsonb, text for the rest, which PostgreSQL parses: uuid, inet,
// enums...); a value that does not fit sends the record to the dead-letter
// output. Times are written in UTC.
//
// Bulk path: rows are written with COPY when there is no upsert_on and
// every column has a type the sink converts itself (text, numbers,
// boolean, times, json/jsonb, bytea). Otherwise multi-row INSERT, in
// chunks of up to 1024 rows: with upsert_on it is INSERT ... ON CONFLICT
// (upsert_on) DO UPDATE, the rows of one transaction de-duplicated by key
// first (the last record wins). At 1024 rows that measured as fast as or
// faster (1.0-1.4x across runs) than COPY into a temporary table followed
// by INSERT ... SELECT DISTINCT ON ... ON CONFLICT, and needs no temporary
// table; without a key, COPY measured as fast as or faster than INSERT
// (BenchmarkPostgresBulkMethods). With columns of other types (uuid, inet,
// interval, enums...) their text goes as parameters that PostgreSQL
// parses with its full input syntax, where binary COPY would have pgx
// parse it with less.
//
// Delivery:
//
//   - exactly_once: Write stages the epoch's converted rows in a file under
//     the component directory; PreCommit seals it (fsync) and returns its
//     token; Commit inserts the rows AND a row (pipeline, component,
//     instance, epoch, token) into weir's table weir_commits in one
//     transaction. A token already in weir_commits is skipped, so Commit is
//     idempotent, also across restarts; Recover commits the last
//     checkpoint's token again and discards anything staged later. The
//     instance tells apart processes that run the same pipeline into the
//     same table (scale-out): each reads, writes and trims only its own
//     rows of weir_commits (see CommitsTable).
//   - at_least_once / at_most_once: Write buffers rows (flushing early past
//     max_buffered_rows) and Flush writes them in one transaction. A
//     transaction cut by a lost connection is retried after reconnecting.
type PostgresConfig struct {
	// DSN is a postgres:// URL or a key=value connection string; the
	// usual PG* environment variables fill in what it leaves out. Its
	// password is never logged. Required.
	DSN string `yaml:"dsn"`
	// Table is "name" or "schema.name", taken literally (case-sensitive).
	// Required.
	Table string `yaml:"table"`
	// Columns maps column names to expressions; default: the record
	// fields named like the table's columns.
	Columns pipeline.ExprMap `yaml:"columns"`
	// UpsertOn names the columns of a unique key: rows whose key exists
	// update it (INSERT ... ON CONFLICT DO UPDATE).
	UpsertOn []string `yaml:"upsert_on"`
	// CreateTable creates the table when it does not exist, with column
	// types inferred from the first record (bigint, double precision,
	// boolean, timestamptz for times and RFC 3339 text, jsonb for lists
	// and objects, text otherwise) and upsert_on as primary key.
	CreateTable bool `yaml:"create_table"`
	// CommitsTable is weir's record of committed epochs (exactly_once);
	// default weir_commits. It is created when missing, with columns
	// pipeline, component, instance, epoch, token, rows, committed_at and
	// primary key (pipeline, component, instance, token).
	//
	// instance is the sink's identity: created once per data_dir (the file
	// instance-id in the component's directory, host name and 12 random
	// hex digits) and kept across restarts, so that processes with
	// separate data_dirs running the same pipeline into the same table
	// never look up, replace or trim each other's rows (their epochs are
	// independent counters). Each process keeps only its latest row.
	// Copying a data_dir to start another process copies its identity:
	// give each process a data_dir of its own.
	//
	// A table of an earlier weir (no instance column) is migrated at
	// start: its rows get the empty instance and the key gains instance.
	// The column keeps no default, so that a process of the earlier
	// version still writing to the table fails on its next commit instead
	// of trimming other processes' rows: upgrade every process of a
	// pipeline together. Rows with the empty instance are read only by
	// Recover (a checkpoint the earlier version took), which moves the one
	// it recovers from to its own instance; those of processes that never
	// come back may be deleted by hand. A table of another shape is
	// refused, naming what is wrong.
	CommitsTable string `yaml:"commits_table"`
	// TasksTable keeps the truth of each input partition (offset and
	// keyed state) when the pipeline reads a Kafka consumer group under
	// exactly_once (see postgres_tasks.go); default weir_tasks. It is
	// created when first needed.
	TasksTable string `yaml:"tasks_table"`
	// MaxBufferedRows bounds the rows buffered between flushes outside
	// exactly_once; default 10000.
	MaxBufferedRows int `yaml:"max_buffered_rows"`
	// PasswordFile is a file holding the password; it overrides the DSN's.
	PasswordFile string `yaml:"password_file"`
	// TLS sets the TLS configuration (CA, client certificate); it
	// replaces what sslmode would choose.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// ConnectTimeout bounds each connection attempt and the first
	// connection at start-up; default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxReconnectDelay caps the backoff between reconnect attempts;
	// default 10s.
	MaxReconnectDelay time.Duration `yaml:"max_reconnect_delay"`
}

// NewPostgresConfig returns a PostgresConfig with its defaults.
func NewPostgresConfig() *PostgresConfig {
	return &PostgresConfig{CommitsTable: "weir_commits", TasksTable: "weir_tasks", MaxBufferedRows: 10000,
		ConnectTimeout: 10 * time.Second, MaxReconnectDelay: 10 * time.Second}
}

// Validate implements pipeline.Validator.
func (c *PostgresConfig) Validate() error {
	if c.DSN == "" {
		return errors.New("postgres: dsn is required (postgres://user@host:5432/db)")
	}
	if _, err := pgx.ParseConfig(c.DSN); err != nil {
		return fmt.Errorf("postgres: dsn %s: %s", connect.RedactURL(c.DSN), pgParseReason(err))
	}
	if _, err := pgTableIdent(c.Table); err != nil {
		return err
	}
	if _, err := pgTableIdent(c.TasksTable); err != nil {
		return fmt.Errorf("postgres: tasks_table: %w", err)
	}
	if _, err := pgTableIdent(c.CommitsTable); err != nil {
		return fmt.Errorf("postgres: commits_table: %w", err)
	}
	for i, name := range c.Columns.Names {
		if name == "" {
			return errors.New("postgres: columns: empty column name")
		}
		if c.Columns.Exprs[i] == nil {
			return fmt.Errorf("postgres: columns.%s needs an expression", name)
		}
	}
	seen := map[string]bool{}
	for _, k := range c.UpsertOn {
		if k == "" || seen[k] {
			return fmt.Errorf("postgres: upsert_on: empty or repeated column %q", k)
		}
		seen[k] = true
		if len(c.Columns.Names) > 0 && !slices.Contains(c.Columns.Names, k) {
			return fmt.Errorf("postgres: upsert_on column %q is not one of columns", k)
		}
	}
	if c.MaxBufferedRows < 1 {
		return fmt.Errorf("postgres: max_buffered_rows %d must be at least 1", c.MaxBufferedRows)
	}
	if c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0 {
		return errors.New("postgres: durations must not be negative")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// pgParseReason keeps the reason of a DSN parse error without the DSN.
func pgParseReason(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap().Error()
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return "cannot parse"
}

func pgTableIdent(name string) (pgx.Identifier, error) {
	if name == "" {
		return nil, errors.New("postgres: table is required")
	}
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("postgres: table %q: want name or schema.name", name)
	}
	for _, p := range parts {
		if p == "" || strings.ContainsRune(p, 0) {
			return nil, fmt.Errorf("postgres: table %q: empty or invalid name", name)
		}
	}
	return pgx.Identifier(parts), nil
}

// pgColumn is one column of the target table.
type pgColumn struct {
	name       string
	oid        uint32
	typ        string // type name, for LoadType
	hasDefault bool
	skip       bool // generated, or GENERATED ALWAYS AS IDENTITY: never written
	kind       pgKind
}

// pgPlan is how records become rows, fixed once resolved.
type pgPlan struct {
	cols  []pgColumn
	names []string
	exprs []*pipeline.Expr // one per column, or nil: field by name (used by Write only)
	keys  []int            // indexes of upsert_on in cols
	// copy: rows go by COPY (binary); false when there is an upsert key or
	// a column of a type pgx would have to parse from text itself (it
	// accepts less than PostgreSQL does): then multi-row INSERT, whose
	// text values PostgreSQL parses.
	copy bool
	// upsertSQL caches the INSERT text per row count.
	upsertSQL map[int]string
}

// finish sets the derived fields of a plan whose cols, names and keys are set.
func (p *pgPlan) finish() *pgPlan {
	p.copy = len(p.keys) == 0
	for _, c := range p.cols {
		if c.kind == pgOther {
			p.copy = false
		}
	}
	if p.upsertSQL == nil {
		p.upsertSQL = map[int]string{}
	}
	return p
}

// NewSink implements pipeline.SinkConfig. It connects, checks the table
// (creating weir_commits under exactly_once) and, when the columns do not
// depend on the first record, resolves them, before returning.
func (c *PostgresConfig) NewSink(b pipeline.Build) (pipeline.Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	connCfg, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn %s: %s", connect.RedactURL(c.DSN), pgParseReason(err))
	}
	if c.PasswordFile != "" {
		if connCfg.Password, err = connect.ReadSecretFile(c.PasswordFile); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	if c.TLS != nil {
		if connCfg.TLSConfig, err = c.TLS.Config(); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if connCfg.TLSConfig.ServerName == "" {
			connCfg.TLSConfig.ServerName = connCfg.Host
		}
		connCfg.Fallbacks = nil // no silent plaintext fallback
	}
	if c.ConnectTimeout > 0 {
		connCfg.ConnectTimeout = c.ConnectTimeout
	}
	connCfg.RuntimeParams["application_name"] = "weir " + b.Component
	table, _ := pgTableIdent(c.Table)
	commits, _ := pgTableIdent(c.CommitsTable)
	tasks, _ := pgTableIdent(c.TasksTable)
	s := &pgSink{cfg: *c, connCfg: connCfg, safeDSN: connect.RedactURL(c.DSN), logger: b.Logger,
		guarantee: b.Guarantee, pipeline: b.Pipeline, component: b.Component,
		table: table, tableName: table.Sanitize(), commits: commits.Sanitize(), tasksTable: tasks.Sanitize()}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.component == "" {
		s.component = fmt.Sprintf("%s/sinks[%d]/postgres", b.Pipeline, b.Index)
	}
	if b.Guarantee == pipeline.ExactlyOnce {
		if s.stage, err = newEpochStage(b.Dir, "postgres"); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if s.instance, err = durable.ReadOrCreateID(filepath.Join(b.Dir, "instance-id"), pgInstancePrefix()); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	if _, err := s.connection(ctx); err != nil {
		return nil, err
	}
	if err := s.loadTable(ctx); err != nil {
		s.conn.Close(context.Background())
		return nil, err
	}
	if len(s.tableCols) == 0 && !c.CreateTable {
		s.conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: table %s does not exist (create it, or set create_table: true)", s.tableName)
	}
	if b.Guarantee == pipeline.ExactlyOnce {
		if err := s.prepareCommitsTable(ctx); err != nil {
			s.conn.Close(context.Background())
			return nil, err
		}
	}
	if len(c.Columns.Names) > 0 && len(s.tableCols) > 0 {
		if err := s.resolve(ctx, nil); err != nil {
			s.conn.Close(context.Background())
			return nil, err
		}
	}
	return s, nil
}

// pgSink implements pipeline.Sink, pipeline.Flusher, pipeline.Committer
// and pipeline.RecordChecker.
//
// Write, Flush, PreCommit, Commit, Recover and Close run on the sink's
// goroutine; Check runs on the runtime's chain goroutine. They share the
// plan (immutable once published through plan) and, only while the plan is
// being resolved, the connection: connMu serializes every use of conn.
type pgSink struct {
	cfg        PostgresConfig
	connCfg    *pgx.ConnConfig
	safeDSN    string
	logger     *slog.Logger
	guarantee  pipeline.Guarantee
	pipeline   string
	component  string
	table      pgx.Identifier
	tableName  string // sanitized, for SQL and messages
	commits    string // sanitized commits table
	tasksTable string // sanitized tasks table
	tasks      pgTasks
	// instance tells this sink's rows of the commits table from those of
	// other processes (exactly_once); see PostgresConfig.CommitsTable.
	instance string
	// legacy: the commits table holds rows of an earlier weir (the empty
	// instance) for this pipeline and component, so Commit looks there too
	// until Recover is done. Used on the sink's goroutine only.
	legacy bool

	connMu    sync.Mutex // guards conn, tableCols, loadedTypes
	conn      *pgx.Conn  // nil after a connection loss, until reconnected
	connected bool       // a connection was made once: the next one is a reconnect
	tableCols []pgColumn
	loaded    []string // type names registered with LoadType, reloaded per connection

	resolveMu sync.Mutex // serializes resolve
	plan      atomic.Pointer[pgPlan]

	checkMu    sync.Mutex       // guards checkExprs and checkRow
	checkExprs []*pipeline.Expr // Check's own clones of plan.exprs
	checkRow   []any

	stage  *epochStage // exactly_once
	rows   [][]any     // buffered rows outside exactly_once
	row    []any       // Write's scratch
	rowBuf []byte      // Write's scratch for staging
}

// connection returns the open connection, connecting (with backoff, until
// ctx ends) when there is none. Callers hold connMu, except NewSink.
func (s *pgSink) connection(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	s.conn = nil
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	var last error // the last attempt's error that ctx's end did not cause
	for {
		conn, err := pgx.ConnectConfig(ctx, s.connCfg)
		if err == nil {
			for _, typ := range s.loaded {
				if t, err := conn.LoadType(ctx, typ); err == nil {
					conn.TypeMap().RegisterType(t)
				}
			}
			s.conn = conn
			if s.connected {
				s.logger.Info("postgres: reconnected", "dsn", s.safeDSN, "attempts", bo.Attempts()+1)
			}
			s.connected = true
			return conn, nil
		}
		err = fmt.Errorf("postgres: connect to %s: %w", s.safeDSN, pgConnectReason(err))
		if pgPermanent(err) {
			return nil, err
		}
		if ctx.Err() != nil && last != nil {
			// This attempt was cut short by the deadline; the one before
			// says why connecting fails (refused, unreachable, ...).
			return nil, fmt.Errorf("%w (gave up: %v)", last, ctx.Err())
		}
		last = err
		d := bo.Next()
		s.logger.Warn("postgres: connect failed; retrying", "dsn", s.safeDSN, "attempt", bo.Attempts(), "in", d, "err", err)
		if connect.SleepContext(ctx, d) != nil {
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		}
	}
}

// pgConnectReason strips pgx's connection-string echo from an error;
// pgx already leaves the password out of it.
func pgConnectReason(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap()
	}
	return err
}

// pgPermanent reports errors retrying does not fix: refused credentials,
// a missing database or role.
func pgPermanent(err error) bool {
	if pipeline.IsCertificateError(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000", "3D000", "42501":
			return true
		}
	}
	return strings.Contains(err.Error(), "password authentication failed") ||
		strings.Contains(err.Error(), "no such file")
}

// pgConnLost reports whether err came from a lost connection (so the
// transaction can be retried on a new one), not from the statement.
func pgConnLost(conn *pgx.Conn, err error) bool {
	if conn == nil || conn.IsClosed() {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var fe *fs.PathError // a file of the sink's (a staged epoch), though it has Timeout and Temporary like net.Error
	if errors.As(err, &fe) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

// loadTable reads the target table's columns (none when it does not
// exist) and registers types pgx does not know (enums, domains).
func (s *pgSink) loadTable(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, `SELECT a.attname, a.atttypid, format_type(a.atttypid, NULL), a.atthasdef,
		a.attgenerated <> '' OR a.attidentity = 'a'
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, s.tableName)
	if err != nil {
		return fmt.Errorf("postgres: read columns of %s: %w", s.tableName, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgColumn, error) {
		var c pgColumn
		err := r.Scan(&c.name, &c.oid, &c.typ, &c.hasDefault, &c.skip)
		c.kind = pgKindOf(c.oid)
		return c, err
	})
	if err != nil {
		return fmt.Errorf("postgres: read columns of %s: %w", s.tableName, err)
	}
	for _, c := range cols {
		if _, ok := s.conn.TypeMap().TypeForOID(c.oid); ok || c.skip {
			continue
		}
		if t, err := s.conn.LoadType(ctx, c.typ); err == nil {
			s.conn.TypeMap().RegisterType(t)
			s.loaded = append(s.loaded, c.typ)
		}
	}
	s.tableCols = cols
	return nil
}

// current returns the resolved plan, resolving it from r when needed.
func (s *pgSink) current(ctx context.Context, r *pipeline.Record) (*pgPlan, error) {
	if p := s.plan.Load(); p != nil {
		return p, nil
	}
	if err := s.resolve(ctx, r); err != nil {
		return nil, err
	}
	return s.plan.Load(), nil
}

// resolve fixes the column plan: from `columns:` and the table, or from
// the table and the first record r; creating the table first when asked.
func (s *pgSink) resolve(ctx context.Context, r *pipeline.Record) error {
	s.resolveMu.Lock()
	defer s.resolveMu.Unlock()
	if s.plan.Load() != nil {
		return nil
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	c := &s.cfg
	if len(s.tableCols) == 0 {
		if _, err := s.connection(ctx); err != nil {
			return err
		}
		if err := s.createTable(ctx, r); err != nil {
			return err
		}
	}
	byName := map[string]pgColumn{}
	for _, col := range s.tableCols {
		byName[col.name] = col
	}
	p := &pgPlan{upsertSQL: map[int]string{}}
	if len(c.Columns.Names) > 0 {
		for i, name := range c.Columns.Names {
			col, ok := byName[name]
			switch {
			case !ok:
				return fmt.Errorf("postgres: column %q does not exist in table %s", name, s.tableName)
			case col.skip:
				return fmt.Errorf("postgres: column %q of %s is generated and cannot be written", name, s.tableName)
			}
			p.cols = append(p.cols, col)
			p.exprs = append(p.exprs, c.Columns.Exprs[i].Clone())
		}
	} else {
		var fs *pipeline.Fields
		if r != nil {
			fs = r.Fields()
		}
		for _, col := range s.tableCols {
			if col.skip || (col.hasDefault && (fs == nil || !fs.Has(col.name))) {
				continue
			}
			p.cols = append(p.cols, col)
		}
		if len(p.cols) == 0 {
			return fmt.Errorf("postgres: no column of %s to write (every column is generated or has a default the first record does not set)", s.tableName)
		}
	}
	for _, col := range p.cols {
		p.names = append(p.names, col.name)
	}
	for _, k := range c.UpsertOn {
		i := -1
		for j, n := range p.names {
			if n == k {
				i = j
			}
		}
		if i < 0 {
			return fmt.Errorf("postgres: upsert_on column %q is not written (columns: %s)", k, strings.Join(p.names, ", "))
		}
		p.keys = append(p.keys, i)
	}
	if p.exprs != nil {
		s.checkMu.Lock()
		s.checkExprs = make([]*pipeline.Expr, len(p.exprs))
		for i, e := range p.exprs {
			s.checkExprs[i] = e.Clone()
		}
		s.checkMu.Unlock()
	}
	s.plan.Store(p.finish())
	s.logger.Info("postgres: writing columns", "table", s.tableName, "columns", p.names, "upsert_on", c.UpsertOn)
	return nil
}

// createTable creates the table from the first record (create_table).
func (s *pgSink) createTable(ctx context.Context, r *pipeline.Record) error {
	if r == nil {
		return fmt.Errorf("postgres: table %s does not exist", s.tableName)
	}
	c := &s.cfg
	var names []string
	var values []any
	if len(c.Columns.Names) > 0 {
		for i, name := range c.Columns.Names {
			v, err := c.Columns.Exprs[i].Clone().Eval(r)
			if err != nil {
				return fmt.Errorf("postgres: create table %s: column %q: %w", s.tableName, name, err)
			}
			names, values = append(names, name), append(values, v)
		}
	} else {
		fs := r.Fields()
		for i := range fs.Len() {
			names, values = append(names, fs.Name(i)), append(values, fs.Value(i))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", s.tableName)
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", pgx.Identifier{n}.Sanitize(), pgInferType(values[i]))
		if slices.Contains(c.UpsertOn, n) {
			b.WriteString(" NOT NULL")
		}
	}
	if len(c.UpsertOn) > 0 {
		b.WriteString(", PRIMARY KEY (")
		for i, k := range c.UpsertOn {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pgx.Identifier{k}.Sanitize())
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	if _, err := s.conn.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("postgres: %s: %w", b.String(), err)
	}
	s.logger.Info("postgres: created table", "sql", b.String())
	if err := s.loadTable(ctx); err != nil {
		return err
	}
	if len(s.tableCols) == 0 {
		return fmt.Errorf("postgres: table %s still missing after CREATE TABLE", s.tableName)
	}
	return nil
}

// convert fills row with r's values for the plan's columns.
func (s *pgSink) convert(p *pgPlan, exprs []*pipeline.Expr, r *pipeline.Record, row []any) ([]any, error) {
	row = row[:0]
	fs := r.Fields()
	for i, col := range p.cols {
		var v any
		if exprs != nil {
			var err error
			if v, err = exprs[i].Eval(r); err != nil {
				return nil, fmt.Errorf("column %q: %w", col.name, err)
			}
		} else {
			v = fs.Get(col.name)
		}
		cv, err := pgConvert(v, col.kind)
		if err != nil {
			return nil, fmt.Errorf("column %q (%s): %w", col.name, col.typ, err)
		}
		if cv == nil && len(p.keys) > 0 {
			for _, k := range p.keys {
				if k == i {
					return nil, fmt.Errorf("column %q: upsert key is null", col.name)
				}
			}
		}
		row = append(row, cv)
	}
	return row, nil
}

// Check implements pipeline.RecordChecker: a record whose values do not
// fit the table's columns goes to the dead-letter output.
func (s *pgSink) Check(r *pipeline.Record) error {
	p, err := s.current(context.Background(), r)
	if err != nil {
		return nil // the sink's own Write reports a failure to resolve
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	s.checkRow, err = s.convert(p, s.checkExprs, r, s.checkRow)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Write implements pipeline.Sink: it converts each record to a row and
// stages it (exactly_once) or buffers it.
func (s *pgSink) Write(ctx context.Context, b *pipeline.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	p, err := s.current(ctx, b.Records[0])
	if err != nil {
		return err
	}
	for _, r := range b.Records {
		if s.row, err = s.convert(p, p.exprs, r, s.row); err != nil {
			return fmt.Errorf("postgres: record %s@%d: %w", r.Origin.Name, r.Origin.Offset, err)
		}
		if s.stage != nil {
			s.rowBuf = s.rowBuf[:0]
			for _, v := range s.row {
				s.rowBuf = pgAppendValue(s.rowBuf, v)
			}
			if err := s.stage.Append(s.rowBuf); err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
			continue
		}
		s.rows = append(s.rows, append([]any(nil), s.row...))
		if len(s.rows) >= s.cfg.MaxBufferedRows {
			if err := s.Flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Flush implements pipeline.Flusher (at_least_once, at_most_once): it
// writes the buffered rows in one transaction, retrying it on a new
// connection when the connection is lost.
func (s *pgSink) Flush(ctx context.Context) error {
	if s.stage != nil || len(s.rows) == 0 {
		return nil
	}
	p := s.plan.Load()
	src := &pgMemRows{rows: s.rows}
	err := s.transact(ctx, func(tx pgx.Tx) error {
		src.i = -1
		return s.insert(ctx, tx, p, src)
	})
	if err != nil {
		return err
	}
	clear(s.rows)
	s.rows = s.rows[:0]
	return nil
}

// transact runs fn in a transaction, on a new connection again when the
// connection was lost (then fn must be safe to run twice).
func (s *pgSink) transact(ctx context.Context, fn func(tx pgx.Tx) error) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	for {
		conn, err := s.connection(ctx)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, fn)
		if err == nil || errors.Is(err, errPGAlreadyCommitted) {
			return nil
		}
		if ctx.Err() != nil || !pgConnLost(conn, err) {
			return err
		}
		conn.Close(context.Background())
		s.conn = nil
		d := bo.Next()
		s.logger.Warn("postgres: connection lost during a transaction; retrying it", "dsn", s.safeDSN, "in", d, "err", err)
		if err := connect.SleepContext(ctx, d); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
}

// errPGAlreadyCommitted rolls back a commit transaction whose epoch is
// already recorded; transact treats it as success.
var errPGAlreadyCommitted = errors.New("epoch already committed")

// pgRows is a replayable row source: pgx.CopyFromSource plus rewind.
type pgRows interface {
	pgx.CopyFromSource
	rewind() error
}

type pgMemRows struct {
	rows [][]any
	i    int
}

func (m *pgMemRows) Next() bool             { m.i++; return m.i < len(m.rows) }
func (m *pgMemRows) Values() ([]any, error) { return m.rows[m.i], nil }
func (m *pgMemRows) Err() error             { return nil }
func (m *pgMemRows) rewind() error          { m.i = -1; return nil }

// pgStagedRows reads converted rows back from a staged epoch.
type pgStagedRows struct {
	r   *stageReader
	row []any
	err error
}

func (m *pgStagedRows) Next() bool {
	f, err := m.r.Next()
	if err != nil {
		if err != io.EOF {
			m.err = err
		}
		return false
	}
	if len(f) != 1 {
		m.err = fmt.Errorf("staged row %d has %d fields, want 1", m.r.Index(), len(f))
		return false
	}
	if m.row, err = pgDecodeValues(f[0], m.row); err != nil {
		m.err = fmt.Errorf("staged row %d: %w", m.r.Index(), err)
		return false
	}
	return true
}
func (m *pgStagedRows) Values() ([]any, error) { return m.row, nil }
func (m *pgStagedRows) Err() error             { return m.err }
func (m *pgStagedRows) rewind() error          { m.err = nil; return m.r.Rewind() }

// insert writes the rows of src: COPY when the plan allows it, else
// multi-row INSERT; with upsert_on, INSERT ... ON CONFLICT of the rows
// de-duplicated by key (the last row of each key wins: a re-fired window
// replaces its earlier value).
func (s *pgSink) insert(ctx context.Context, tx pgx.Tx, p *pgPlan, src pgRows) error {
	if p.copy {
		if _, err := tx.CopyFrom(ctx, s.table, p.names, src); err != nil {
			return fmt.Errorf("postgres: copy into %s: %w", s.tableName, err)
		}
		return nil
	}
	// Pass 1: the index of the last row of each key.
	last := map[string]int{}
	var key []byte
	i := 0
	for len(p.keys) > 0 && src.Next() {
		row, _ := src.Values()
		key = key[:0]
		for _, k := range p.keys {
			key = pgAppendValue(key, row[k])
		}
		last[string(key)] = i
		i++
	}
	if err := src.Err(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := src.rewind(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	// Pass 2: the kept rows, in chunks.
	chunk := max(1, min(1024, 65535/len(p.cols)))
	args := make([]any, 0, chunk*len(p.cols))
	flush := func(n int) error {
		if n == 0 {
			return nil
		}
		sql, ok := p.upsertSQL[n]
		if !ok {
			sql = s.upsertSQL(p, n)
			p.upsertSQL[n] = sql
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("postgres: insert into %s: %w", s.tableName, err)
		}
		args = args[:0]
		return nil
	}
	i, n := 0, 0
	for src.Next() {
		row, _ := src.Values()
		key = key[:0]
		for _, k := range p.keys {
			key = pgAppendValue(key, row[k])
		}
		if len(p.keys) == 0 || last[string(key)] == i {
			args = append(args, row...)
			if n++; n == chunk {
				if err := flush(n); err != nil {
					return err
				}
				n = 0
			}
		}
		i++
	}
	if err := src.Err(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return flush(n)
}

func (s *pgSink) upsertSQL(p *pgPlan, n int) string {
	var b strings.Builder
	cols := make([]string, len(p.names))
	for i, name := range p.names {
		cols[i] = pgx.Identifier{name}.Sanitize()
	}
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", s.tableName, strings.Join(cols, ", "))
	arg := 1
	for r := range n {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(arg))
			arg++
		}
		b.WriteByte(')')
	}
	if len(p.keys) == 0 {
		return b.String()
	}
	keys := make([]string, len(p.keys))
	isKey := map[int]bool{}
	for i, k := range p.keys {
		keys[i], isKey[k] = cols[k], true
	}
	fmt.Fprintf(&b, " ON CONFLICT (%s) DO ", strings.Join(keys, ", "))
	var sets []string
	for i, c := range cols {
		if !isKey[i] {
			sets = append(sets, c+" = EXCLUDED."+c)
		}
	}
	if len(sets) == 0 {
		b.WriteString("NOTHING")
	} else {
		b.WriteString("UPDATE SET " + strings.Join(sets, ", "))
	}
	return b.String()
}

// PreCommit implements pipeline.Committer: it seals the epoch's staged
// rows (fsync) and returns the token naming them.
func (s *pgSink) PreCommit(_ context.Context, checkpoint uint64) ([]byte, error) {
	t, err := s.seal(checkpoint)
	if err != nil {
		return nil, err
	}
	return s.marshalToken(t)
}

// seal seals the epoch's staged rows.
func (s *pgSink) seal(checkpoint uint64) (stageToken, error) {
	if s.stage == nil {
		return stageToken{}, errors.New("postgres: PreCommit outside exactly_once")
	}
	t, err := s.stage.Seal(checkpoint)
	if err != nil {
		return t, fmt.Errorf("postgres: %w", err)
	}
	if p := s.plan.Load(); p != nil && t.Records > 0 {
		t.Columns = p.names
	}
	return t, nil
}

func (s *pgSink) marshalToken(t stageToken) ([]byte, error) { return json.Marshal(t) }

// Commit implements pipeline.Committer: in one transaction it records the
// epoch in weir_commits under this sink's instance, inserts its staged
// rows and deletes the instance's records of earlier epochs; when the
// epoch is already recorded it does nothing. A transaction cut by a lost
// connection is retried: the record in weir_commits tells whether it had
// landed.
func (s *pgSink) Commit(ctx context.Context, token []byte) error {
	if s.stage == nil {
		return errors.New("postgres: Commit outside exactly_once")
	}
	t, err := parseStageToken(token)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if t.Records == 0 && len(t.Tasks) == 0 {
		return nil // nothing to make visible
	}
	var p *pgPlan
	if t.Records > 0 {
		if p, err = s.planFor(ctx, t); err != nil {
			return err
		}
	}
	err = s.transact(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO `+s.commits+` (pipeline, component, instance, epoch, token, rows) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
			s.pipeline, s.component, s.instance, int64(t.Checkpoint), t.ID(), t.Records)
		if err != nil {
			return fmt.Errorf("postgres: record epoch in %s: %w", s.commits, err)
		}
		if tag.RowsAffected() == 0 {
			return errPGAlreadyCommitted
		}
		if s.legacy {
			// Committed by an earlier weir, which recorded no instance:
			// its record moves to this instance (inserted above); the
			// epoch's rows are in the table already.
			tag, err := tx.Exec(ctx, `DELETE FROM `+s.commits+` WHERE pipeline = $1 AND component = $2 AND instance = '' AND token = $3`,
				s.pipeline, s.component, t.ID())
			if err != nil {
				return fmt.Errorf("postgres: look up epoch in %s: %w", s.commits, err)
			}
			if tag.RowsAffected() > 0 {
				return nil
			}
		}
		if err := s.commitTasks(ctx, tx, t); err != nil {
			return err
		}
		if t.Records > 0 {
			r, err := s.stage.Open(t)
			if err != nil {
				return fmt.Errorf("postgres: commit checkpoint %d: %w", t.Checkpoint, err)
			}
			defer r.Close()
			if err := s.insert(ctx, tx, p, &pgStagedRows{r: r}); err != nil {
				return err
			}
		}
		// Only this instance's epochs are ordered with t's: other
		// processes count checkpoints of their own.
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.commits+` WHERE pipeline = $1 AND component = $2 AND instance = $3 AND epoch < $4`,
			s.pipeline, s.component, s.instance, int64(t.Checkpoint)); err != nil {
			return fmt.Errorf("postgres: trim %s: %w", s.commits, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.stage.Remove(t); err != nil {
		s.logger.Warn("postgres: remove committed staging file", "file", t.File, "err", err)
	}
	return nil
}

// planFor returns the plan for the columns a staged epoch was written
// with: the current plan when they match, else one built from the table
// (a restarted process committing an epoch of the previous one).
func (s *pgSink) planFor(ctx context.Context, t stageToken) (*pgPlan, error) {
	if len(t.Columns) == 0 {
		return nil, fmt.Errorf("postgres: commit token of checkpoint %d names no columns", t.Checkpoint)
	}
	if p := s.plan.Load(); p != nil && slices.Equal(p.names, t.Columns) {
		return p, nil
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if len(s.tableCols) == 0 {
		if _, err := s.connection(ctx); err != nil {
			return nil, err
		}
		if err := s.loadTable(ctx); err != nil {
			return nil, err
		}
	}
	byName := map[string]pgColumn{}
	for _, c := range s.tableCols {
		byName[c.name] = c
	}
	p := &pgPlan{upsertSQL: map[int]string{}, names: t.Columns}
	for _, name := range t.Columns {
		c, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("postgres: column %q of the staged epoch of checkpoint %d no longer exists in %s", name, t.Checkpoint, s.tableName)
		}
		p.cols = append(p.cols, c)
	}
	for _, k := range s.cfg.UpsertOn {
		i := slices.Index(t.Columns, k)
		if i < 0 {
			return nil, fmt.Errorf("postgres: upsert_on column %q is not among the staged columns", k)
		}
		p.keys = append(p.keys, i)
	}
	return p.finish(), nil
}

// Recover implements pipeline.Committer: it commits the last checkpoint's
// token again (a no-op when weir_commits has it, under this instance or,
// after an upgrade, under the earlier weir's empty instance) and discards
// anything staged after it.
func (s *pgSink) Recover(ctx context.Context, token []byte) error {
	if s.stage == nil {
		return nil
	}
	if token != nil {
		err := s.Commit(ctx, token)
		switch {
		case errors.Is(err, pipeline.ErrFenced):
			// A task of this epoch moved to another process while this one
			// was down: the new owner resumed from the truth before it, and
			// produces this epoch's output itself.
			s.logger.Warn("postgres: the last checkpoint's epoch is discarded: its tasks are owned by a later generation", "err", err)
		case err != nil:
			return err
		}
	}
	s.legacy = false // every later token is this version's
	if err := s.stage.Reset(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Close implements pipeline.Sink. Outside exactly_once it first flushes
// buffered rows (within ctx). Staged data is kept for Recover.
func (s *pgSink) Close(ctx context.Context) error {
	var err error
	if s.stage == nil && len(s.rows) > 0 {
		err = s.Flush(ctx)
	}
	if s.stage != nil && s.stage.f != nil {
		s.stage.f.Close()
		s.stage.f = nil
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn != nil {
		s.conn.Close(ctx)
		s.conn = nil
	}
	return err
}
