package sinks

// The commits table of the postgres sink (exactly_once): its shape, its
// creation, the migration of a table written by an earlier weir, and the
// instance id that keeps the rows of different processes apart. Commit and
// Recover, which read and write it, are in postgres.go.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgCommitsColumns are the columns of the commits table the sink writes
// and reads, with their types (as format_type prints them).
var pgCommitsColumns = []struct{ name, typ string }{
	{"pipeline", "text"}, {"component", "text"}, {"instance", "text"},
	{"epoch", "bigint"}, {"token", "text"}, {"rows", "bigint"},
}

// pgCommitsKey is the commits table's primary key, sorted: one record per
// (pipeline, component, instance, token). INSERT ... ON CONFLICT DO NOTHING
// on it is what makes Commit idempotent.
var pgCommitsKey = []string{"component", "instance", "pipeline", "token"}

// pgCommitsEarlierKey is the primary key of a commits table created by a
// weir that had no instance column, sorted.
var pgCommitsEarlierKey = []string{"component", "pipeline", "token"}

// pgCommitsShape is what the catalog says about a commits table.
type pgCommitsShape struct {
	kind   string // pg_class.relkind; "" when there is no such relation
	cols   map[string]pgCommitsColumn
	unique []pgUniqueIndex // plain unique indexes (no expression, no predicate)
}

type pgCommitsColumn struct {
	typ       string // format_type
	notNull   bool
	defaulted bool // has a default, or is an identity or generated column
}

type pgUniqueIndex struct {
	primary    bool
	constraint string   // the primary key's constraint name, for migration
	cols       []string // sorted
}

// pgQuerier is a connection or a transaction.
type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readCommitsShape reads the shape of the commits table from the catalog.
func (s *pgSink) readCommitsShape(ctx context.Context, q pgQuerier) (*pgCommitsShape, error) {
	sh := &pgCommitsShape{cols: map[string]pgCommitsColumn{}}
	rows, err := q.Query(ctx, `SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)`, s.commits)
	if err != nil {
		return nil, err
	}
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(kinds) == 0 {
		return sh, err
	}
	sh.kind = kinds[0]
	rows, err = q.Query(ctx, `SELECT attname::text, format_type(atttypid, atttypmod), attnotnull,
		atthasdef OR attidentity <> '' OR attgenerated <> ''
		FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, s.commits)
	if err != nil {
		return nil, err
	}
	var name string
	var c pgCommitsColumn
	if _, err := pgx.ForEachRow(rows, []any{&name, &c.typ, &c.notNull, &c.defaulted}, func() error {
		sh.cols[name] = c
		return nil
	}); err != nil {
		return nil, err
	}
	rows, err = q.Query(ctx, `SELECT i.indisprimary, coalesce(k.conname::text, ''),
		array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) ORDER BY 1)
		FROM pg_index i LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype = 'p'
		WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL`, s.commits)
	if err != nil {
		return nil, err
	}
	var u pgUniqueIndex
	if _, err := pgx.ForEachRow(rows, []any{&u.primary, &u.constraint, &u.cols}, func() error {
		sh.unique = append(sh.unique, pgUniqueIndex{primary: u.primary, constraint: u.constraint, cols: slices.Clone(u.cols)})
		return nil
	}); err != nil {
		return nil, err
	}
	return sh, nil
}

// earlier reports whether the table is a commits table of a weir without
// instances (to be migrated): every column but instance as weir writes it,
// no instance column, or the earlier primary key.
func (sh *pgCommitsShape) earlier() bool {
	if sh.kind != "r" && sh.kind != "p" {
		return false
	}
	for _, want := range pgCommitsColumns {
		c, ok := sh.cols[want.name]
		if want.name != "instance" && (!ok || c.typ != want.typ) {
			return false
		}
	}
	_, hasInstance := sh.cols["instance"]
	return !hasInstance || sh.earlierKey() != nil
}

// earlierKey returns the earlier weir's primary key, when the table has it.
func (sh *pgCommitsShape) earlierKey() *pgUniqueIndex {
	for i, u := range sh.unique {
		if u.primary && slices.Equal(u.cols, pgCommitsEarlierKey) {
			return &sh.unique[i]
		}
	}
	return nil
}

// problem says what makes the table unusable as the commits table, or "".
func (sh *pgCommitsShape) problem() string {
	switch sh.kind {
	case "r", "p":
	case "":
		return "it does not exist"
	default:
		what := map[string]string{"v": "a view", "m": "a materialized view", "f": "a foreign table",
			"S": "a sequence", "i": "an index", "I": "an index", "c": "a composite type"}[sh.kind]
		if what == "" {
			what = "relkind " + sh.kind
		}
		return "it is " + what + ", not a table"
	}
	for _, want := range pgCommitsColumns {
		if c, ok := sh.cols[want.name]; ok && c.typ != want.typ {
			return fmt.Sprintf("column %s is %s, want %s", want.name, c.typ, want.typ)
		}
	}
	for _, want := range pgCommitsColumns {
		if _, ok := sh.cols[want.name]; !ok {
			return "it has no column " + want.name
		}
	}
	var others []string
	for name, c := range sh.cols {
		if c.notNull && !c.defaulted && !slices.ContainsFunc(pgCommitsColumns, func(w struct{ name, typ string }) bool { return w.name == name }) {
			others = append(others, name)
		}
	}
	if len(others) > 0 {
		slices.Sort(others)
		return fmt.Sprintf("column %s is NOT NULL without a default, and weir does not write it", others[0])
	}
	keyed := false
	for _, u := range sh.unique {
		for _, k := range pgCommitsKey {
			if !slices.Contains(u.cols, k) {
				// A record of another instance or epoch would collide
				// with it: Commit would take an epoch for committed.
				return fmt.Sprintf("its unique key (%s) does not include %s, so one process's commit record could stand for another's",
					strings.Join(u.cols, ", "), k)
			}
		}
		keyed = keyed || slices.Equal(u.cols, pgCommitsKey)
	}
	if !keyed {
		return "it has no primary key on (pipeline, component, instance, token), which makes a commit record unique"
	}
	return ""
}

// prepareCommitsTable creates the commits table when missing, migrates one
// of an earlier weir, refuses one of another shape, and notes whether rows
// of an earlier weir may hold this component's last commit (s.legacy).
func (s *pgSink) prepareCommitsTable(ctx context.Context) error {
	_, err := s.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.commits+` (
		pipeline text NOT NULL, component text NOT NULL, instance text NOT NULL, epoch bigint NOT NULL,
		token text NOT NULL, rows bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (pipeline, component, instance, token))`)
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07")) { // created concurrently
		return fmt.Errorf("postgres: create %s: %w", s.commits, err)
	}
	sh, err := s.readCommitsShape(ctx, s.conn)
	if err != nil {
		return fmt.Errorf("postgres: read the shape of commits table %s: %w", s.commits, err)
	}
	if sh.earlier() {
		if err := s.migrateCommitsTable(ctx); err != nil {
			return err
		}
		if sh, err = s.readCommitsShape(ctx, s.conn); err != nil {
			return fmt.Errorf("postgres: read the shape of commits table %s: %w", s.commits, err)
		}
	}
	if why := sh.problem(); why != "" {
		return fmt.Errorf("postgres: commits table %s cannot be used: %s (it is not weir's, or was changed: set commits_table to a table weir may create and own)", s.commits, why)
	}
	if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.commits+` WHERE pipeline = $1 AND component = $2 AND instance = '')`,
		s.pipeline, s.component).Scan(&s.legacy); err != nil {
		return fmt.Errorf("postgres: read %s: %w", s.commits, err)
	}
	return nil
}

// migrateCommitsTable adds the instance column and the key with it to a
// commits table of an earlier weir, in one transaction that holds the
// table's lock, so that processes starting together migrate it once. The
// rows it holds get the empty instance. The column keeps no default: a process of
// the earlier version fails on its next commit instead of trimming the
// records of other processes.
func (s *pgSink) migrateCommitsTable(ctx context.Context) error {
	fix := fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS instance text NOT NULL DEFAULT ''; "+
		"ALTER TABLE %[1]s ALTER COLUMN instance DROP DEFAULT; "+
		"ALTER TABLE %[1]s DROP CONSTRAINT <its primary key>, ADD PRIMARY KEY (pipeline, component, instance, token)", s.commits)
	var rows int64
	migrated := false
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE `+s.commits+` IN ACCESS EXCLUSIVE MODE`); err != nil {
			return err
		}
		sh, err := s.readCommitsShape(ctx, tx) // as it is now that no one else migrates it
		if err != nil || !sh.earlier() {
			return err
		}
		if _, ok := sh.cols["instance"]; !ok {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+s.commits+` ADD COLUMN instance text NOT NULL DEFAULT ''`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `ALTER TABLE `+s.commits+` ALTER COLUMN instance DROP DEFAULT`); err != nil {
				return err
			}
		}
		if k := sh.earlierKey(); k != nil {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+s.commits+` DROP CONSTRAINT `+pgx.Identifier{k.constraint}.Sanitize()+
				`, ADD PRIMARY KEY (pipeline, component, instance, token)`); err != nil {
				return err
			}
		}
		migrated = true
		return tx.QueryRow(ctx, `SELECT count(*) FROM `+s.commits).Scan(&rows)
	})
	if err != nil {
		return fmt.Errorf("postgres: migrate commits table %s of an earlier weir (add the instance column): %w; as the table's owner: %s", s.commits, err, fix)
	}
	if !migrated {
		return nil // another process did it first
	}
	s.logger.Info("postgres: migrated commits table: added the instance column; its earlier rows have instance ''", "table", s.commits, "rows", rows)
	return nil
}

// pgInstancePrefix starts a new instance id: the host name, which tells an
// operator reading the commits table which machine a row is from (the
// random part that follows makes it unique).
func pgInstancePrefix() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 63 {
		host = host[:63]
	}
	if host == "" {
		host = "weir"
	}
	return host + "-"
}
