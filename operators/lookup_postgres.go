package operators

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// LookupPostgresConfig is a lookup's `table: {postgres: {...}}`: the rows
// of a query, held in memory and read again every refresh.
//
//	table:
//	  postgres: { dsn: "postgres://127.0.0.1:5432/test", key: id, refresh: 1m,
//	              query: "select id, name, tier from customers" }
//
// The query runs when the operator starts; PostgreSQL must answer within
// connect_timeout, or the start fails (and the pipeline is started again
// after its restart backoff). Every refresh the query runs again, on its
// own goroutine, and its result replaces the table at once, between two
// batches; records never wait for it. A refresh that fails (the server is
// down, the query fails) keeps the last good table, is logged, and is
// retried with backoff, at most refresh apart. Columns are named as the
// query names them; values are numbers, text, booleans, times, or JSON
// for json/jsonb (other types as their text). When a key appears on
// several rows, the last one wins.
type LookupPostgresConfig struct {
	// DSN is a postgres:// URL or key=value string; its password is
	// never logged. Required.
	DSN string `yaml:"dsn"`
	// Query is the SELECT whose rows are the table. Required.
	Query string `yaml:"query"`
	// Key is the column records are matched on. Required.
	Key string `yaml:"key"`
	// Refresh is how often the query runs again; default 1m.
	Refresh time.Duration `yaml:"refresh"`
	// PasswordFile holds the password; it overrides the DSN's.
	PasswordFile string `yaml:"password_file"`
	// TLS sets the TLS configuration; it replaces what sslmode chooses.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// ConnectTimeout bounds each connection attempt and the first load;
	// default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

func newLookupPostgresConfig() *LookupPostgresConfig {
	return &LookupPostgresConfig{Refresh: time.Minute, ConnectTimeout: 10 * time.Second}
}

func (c *LookupPostgresConfig) decode(q yamlPair) error { return decodeTable(q, "postgres", c) }

// check validates the options.
func (c *LookupPostgresConfig) check() error {
	switch {
	case c.DSN == "":
		return errors.New("needs `dsn:` (postgres://user@host:5432/db)")
	case strings.TrimSpace(c.Query) == "":
		return errors.New("needs `query:`, a SELECT whose rows are the table")
	case c.Key == "":
		return errors.New("needs `key:`, the column records are matched on")
	case c.Refresh <= 0:
		return errors.New("refresh: want a positive duration such as 1m")
	case c.ConnectTimeout < 0:
		return errors.New("connect_timeout: must not be negative")
	}
	if _, err := pgx.ParseConfig(c.DSN); err != nil {
		return fmt.Errorf("dsn %s: cannot parse", connect.RedactURL(c.DSN))
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	return nil
}

// connConfig builds the pgx configuration.
func (c *LookupPostgresConfig) connConfig(component string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("dsn %s: cannot parse", connect.RedactURL(c.DSN))
	}
	if c.PasswordFile != "" {
		if cfg.Password, err = connect.ReadSecretFile(c.PasswordFile); err != nil {
			return nil, err
		}
	}
	if c.TLS != nil {
		if cfg.TLSConfig, err = c.TLS.Config(); err != nil {
			return nil, err
		}
		if cfg.TLSConfig.ServerName == "" {
			cfg.TLSConfig.ServerName = cfg.Host
		}
		cfg.Fallbacks = nil
	}
	if c.ConnectTimeout > 0 {
		cfg.ConnectTimeout = c.ConnectTimeout
	}
	cfg.RuntimeParams["application_name"] = "weir " + component
	return cfg, nil
}

// lookupPostgresLoader runs the query; it is used by one goroutine at a
// time (open, then the reloader).
type lookupPostgresLoader struct {
	cfg     *LookupPostgresConfig
	connCfg *pgx.ConnConfig
	safeDSN string
	conn    *pgx.Conn
	stop    chan struct{} // closed on close: cuts a query short
}

// open runs the query once (retrying with backoff within connect_timeout)
// and starts the refresher.
func (c *LookupPostgresConfig) open(b pipeline.Build, logger *slog.Logger) (*lookupMemTable, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("lookup: table: postgres: %w", err)
	}
	connCfg, err := c.connConfig(b.Component)
	if err != nil {
		return nil, fmt.Errorf("lookup: table: postgres: %w", err)
	}
	l := &lookupPostgresLoader{cfg: c, connCfg: connCfg, safeDSN: connect.RedactURL(c.DSN), stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	bo := connect.Backoff{Max: 2 * time.Second}
	var idx *lookupIndex
	for {
		if idx, err = l.load(ctx); err == nil {
			break
		}
		if lookupPgPermanent(err) || ctx.Err() != nil {
			l.close()
			return nil, fmt.Errorf("lookup: %w", err)
		}
		d := bo.Next()
		logger.Warn("lookup: loading the postgres table failed; retrying", "in", d, "err", err)
		if connect.SleepContext(ctx, d) != nil {
			l.close()
			return nil, fmt.Errorf("lookup: %w (gave up after connect_timeout)", err)
		}
	}
	logger.Info("lookup: table loaded", "table", idx.source, "rows", len(idx.rows))
	t := startLookupMemTable(idx, c.Refresh, logger, b.Component, func() (*lookupIndex, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		return l.load(ctx)
	})
	return t.onClose(l.close), nil
}

// load runs the query on the loader's connection (connecting first when
// there is none) and indexes its rows.
func (l *lookupPostgresLoader) load(ctx context.Context) (*lookupIndex, error) {
	if l.conn == nil || l.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, l.connCfg)
		if err != nil {
			var ce *pgconn.ConnectError
			if errors.As(err, &ce) && ce.Unwrap() != nil {
				err = ce.Unwrap()
			}
			return nil, fmt.Errorf("postgres table: connect to %s: %w", l.safeDSN, err)
		}
		l.conn = conn
	}
	rows, err := l.conn.Query(ctx, l.cfg.Query)
	if err != nil {
		return nil, l.queryErr(err)
	}
	defer rows.Close()
	if len(rows.FieldDescriptions()) == 0 {
		rows.Close() // pgx reports a failed statement here
		if err := rows.Err(); err != nil {
			return nil, l.queryErr(err)
		}
	}
	idx := &lookupIndex{source: "postgres query", colIndex: map[string]int{}, rows: map[string][]any{}, fixed: true}
	keyCol := -1
	for i, fd := range rows.FieldDescriptions() {
		if _, dup := idx.colIndex[fd.Name]; dup {
			return nil, fmt.Errorf("postgres table: the query returns column %q twice (name them apart with AS)", fd.Name)
		}
		idx.column(fd.Name)
		if fd.Name == l.cfg.Key {
			keyCol = i
		}
	}
	if keyCol < 0 {
		return nil, &lookupPgConfigError{fmt.Errorf("postgres table: the query has no column %q, the key (it has %s)", l.cfg.Key, knownKeys(idx.columns...))}
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, l.queryErr(err)
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			row[i] = lookupPgValue(v)
		}
		if row[keyCol] == nil {
			continue // a null key matches nothing
		}
		kb, ok := appendLookupKey(nil, row[keyCol])
		if !ok {
			return nil, &lookupPgConfigError{fmt.Errorf("postgres table: key column %q holds %s, not a key", l.cfg.Key, parseDescribeValue(row[keyCol]))}
		}
		key := string(kb)
		if _, dup := idx.rows[key]; dup {
			idx.dups++
		}
		idx.rows[key] = row
	}
	if err := rows.Err(); err != nil {
		return nil, l.queryErr(err)
	}
	return idx, nil
}

func (l *lookupPostgresLoader) queryErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !strings.HasPrefix(pe.Code, "08") && !strings.HasPrefix(pe.Code, "57") && !strings.HasPrefix(pe.Code, "53") {
		return &lookupPgConfigError{fmt.Errorf("postgres table: query: %w", err)}
	}
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn = nil
	}
	return fmt.Errorf("postgres table: query: %w", err)
}

// lookupPgConfigError is a failure that retrying does not fix at start:
// the query is wrong, or lacks the key.
type lookupPgConfigError struct{ err error }

func (e *lookupPgConfigError) Error() string { return e.err.Error() }
func (e *lookupPgConfigError) Unwrap() error { return e.err }

func lookupPgPermanent(err error) bool {
	var ce *lookupPgConfigError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000", "3D000", "42501":
			return true
		}
	}
	return strings.Contains(err.Error(), "password authentication failed")
}

func (l *lookupPostgresLoader) close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn = nil
	}
}

// lookupPgValue converts a value pgx decoded into a field value.
func lookupPgValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64, float64, time.Time, map[string]any, []any:
		return x
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int8:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case []byte:
		return string(x)
	case pgtype.Numeric:
		if i, err := x.Int64Value(); err == nil && i.Valid && x.Exp >= 0 {
			return i.Int64
		}
		if f, err := x.Float64Value(); err == nil && f.Valid && !math.IsInf(f.Float64, 0) && !math.IsNaN(f.Float64) {
			return f.Float64
		}
		return nil
	case [16]byte: // uuid
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}
