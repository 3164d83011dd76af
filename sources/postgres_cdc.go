package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("postgres_cdc",
		"stream the inserts, updates and deletes of PostgreSQL tables by logical replication (pgoutput), replayable by LSN",
		NewPostgresCDCConfig)
}

// PostgresCDCConfig is the `postgres_cdc:` source: change data capture
// from PostgreSQL by logical replication, with the built-in pgoutput
// plugin, through a publication and a replication slot.
//
//	sources:
//	  - postgres_cdc: { dsn: "postgres://weir@db:5432/shop", publication: weir_shop,
//	                    slot: weir_shop, tables: [public.orders, public.customers],
//	                    snapshot: true }
//
// The server needs wal_level = logical and a user with the REPLICATION
// attribute (or a superuser). The publication is created when missing
// (FOR TABLE the listed tables, FOR ALL TABLES when none are listed); an
// existing one is used as it is. The slot is created when missing, at
// start-up (with snapshot: true, at the first Read, with the snapshot). A slot that is gone while a checkpoint
// still needs it (dropped while weir ran, or invalidated because it fell
// behind max_slot_wal_keep_size) stops the pipeline with an error: the
// changes since the checkpoint went with it, and weir never creates a new
// slot silently over that gap.
//
// Records: one per changed row, with fields
//
//	op           insert | update | delete | truncate | snapshot
//	table        schema-qualified: "public.orders"
//	before       the old row: for delete and for update when the table's
//	             REPLICA IDENTITY sends it (FULL: every column; DEFAULT: the
//	             primary key columns, on delete or when the key changed);
//	             null otherwise
//	after        the new row (insert, update, snapshot); null for delete
//	lsn          the change's LSN, "16/B374D848"
//	xid          the transaction id
//	commit_time  the transaction's commit time (also the record's event time)
//	unchanged    on update, the columns whose value PostgreSQL did not send
//	             (an unchanged TOASTed value): they are left out of after,
//	             never set to null
//
// Row values are typed from the table's column types: booleans, integers
// (int64), floating point, timestamps and dates (time), json/jsonb
// (decoded), arrays (lists); numeric keeps its exact decimal text, and
// every other type (uuid, inet, interval, enums, bytea as \x hex) its
// PostgreSQL text. An ALTER TABLE in the middle of the stream arrives as a
// new relation message before the next change of the table: the records
// after it carry the new columns.
//
// Snapshot: with snapshot: true, a fresh start creates the slot with an
// exported snapshot, reads every table of the publication in that
// snapshot (records with op snapshot) and then streams from the slot's
// consistent point: the snapshot and the stream meet exactly, nothing
// missed and nothing twice. A crash during the snapshot starts it over
// with a new slot (the exported snapshot dies with its connection): the
// rows already delivered from the first attempt are delivered again, so
// write a snapshot into a sink that upserts by key (postgres upsert_on).
//
// Delivery: the source is replayable by LSN. Its position is the end LSN
// of the last transaction read whole (and, for a transaction read in
// part, how many of its changes were read). The slot's confirmed flush
// LSN is advanced (standby status update) only once a checkpoint that
// covers the changes has committed, so after a crash PostgreSQL still has
// them and weir reads them again from the checkpoint's LSN. Keepalives are
// answered meanwhile, and a quiet database's position moves on with the
// server's keepalives, so the slot does not hold WAL back. With a sink
// that commits idempotently (postgres, file, kafka) the pipeline is
// exactly-once; with an at-least-once sink, a crash repeats the changes
// after the last checkpoint. A lost replication connection is
// reconnected with backoff, resuming where the records handed on end.
type PostgresCDCConfig struct {
	// DSN is a postgres:// URL or a key=value connection string. Instead,
	// host, port, user and database may be given one by one (they also
	// override the DSN's). The password is never logged.
	DSN      string `yaml:"dsn"`
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	User     string `yaml:"user"`
	Database string `yaml:"database"`
	// PasswordFile is a file holding the password; it overrides the DSN's.
	PasswordFile string `yaml:"password_file"`
	// TLS sets the TLS configuration (CA, client certificate).
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// Publication is the publication to read; default
	// "weir_<pipeline>_<index>". Created when missing.
	Publication string `yaml:"publication"`
	// Tables are the tables of a publication weir creates ("orders" or
	// "schema.orders"); empty: FOR ALL TABLES (needs a superuser).
	Tables []string `yaml:"tables"`
	// Slot is the logical replication slot; default the publication's
	// name. Created when missing on a fresh start.
	Slot string `yaml:"slot"`
	// Snapshot reads the tables' current rows first, consistent with the
	// stream that follows; default false (only changes from the slot's
	// start on).
	Snapshot bool `yaml:"snapshot"`
	// StatusInterval is how often a standby status update is sent when
	// nothing else made one due; default 10s. Keep it well below the
	// server's wal_sender_timeout (60s by default).
	StatusInterval time.Duration `yaml:"status_interval"`
	// ConnectTimeout bounds each connection attempt and the first
	// connection at start-up; default 10s. Later losses are retried for
	// ever, with backoff.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxReconnectDelay caps the backoff between reconnect attempts;
	// default 10s.
	MaxReconnectDelay time.Duration `yaml:"max_reconnect_delay"`
	// Linger is how long Read keeps collecting changes into a batch after
	// the first; default 5ms.
	Linger time.Duration `yaml:"linger"`
}

// NewPostgresCDCConfig returns a PostgresCDCConfig with its defaults.
func NewPostgresCDCConfig() *PostgresCDCConfig {
	return &PostgresCDCConfig{StatusInterval: 10 * time.Second, ConnectTimeout: 10 * time.Second,
		MaxReconnectDelay: 10 * time.Second, Linger: 5 * time.Millisecond}
}

// cdcIdent is what the source accepts as a slot or publication name: what
// PostgreSQL accepts for a slot (lower case, digits, underscore, at most
// 63 bytes), so that names are used unquoted in the replication protocol.
var cdcIdent = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate implements pipeline.Validator.
func (c *PostgresCDCConfig) Validate() error {
	if c.DSN == "" && c.Host == "" {
		return errors.New("postgres_cdc: dsn (postgres://user@host:5432/db) or host is required")
	}
	if _, err := c.connString(); err != nil {
		return err
	}
	if c.Publication != "" && !cdcIdent.MatchString(c.Publication) {
		return fmt.Errorf("postgres_cdc: publication %q: use 1 to 63 lower-case letters, digits or '_'", c.Publication)
	}
	if c.Slot != "" && !cdcIdent.MatchString(c.Slot) {
		return fmt.Errorf("postgres_cdc: slot %q: use 1 to 63 lower-case letters, digits or '_'", c.Slot)
	}
	for _, t := range c.Tables {
		if _, err := cdcTableIdent(t); err != nil {
			return err
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("postgres_cdc: port %d out of range", c.Port)
	}
	if c.StatusInterval < 0 || c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0 || c.Linger < 0 {
		return errors.New("postgres_cdc: durations must not be negative")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("postgres_cdc: %w", err)
	}
	return nil
}

func cdcTableIdent(name string) (pgx.Identifier, error) {
	parts := strings.Split(name, ".")
	if name == "" || len(parts) > 2 {
		return nil, fmt.Errorf("postgres_cdc: table %q: want name or schema.name", name)
	}
	for _, p := range parts {
		if p == "" || strings.ContainsRune(p, 0) {
			return nil, fmt.Errorf("postgres_cdc: table %q: empty or invalid name", name)
		}
	}
	return pgx.Identifier(parts), nil
}

// connString is the DSN with host, port, user and database applied.
func (c *PostgresCDCConfig) connString() (string, error) {
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
		}
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(c.Port))
	}
	add("user", c.User)
	add("dbname", c.Database)
	s := c.DSN
	if len(kv) > 0 {
		if strings.Contains(s, "://") {
			// A URL cannot be extended with key=value pairs: parse it, then
			// override the parsed fields instead (see pgxConfig).
			if _, err := pgx.ParseConfig(s); err != nil {
				return "", fmt.Errorf("postgres_cdc: dsn %s: %s", connect.RedactURL(s), cdcParseReason(err))
			}
			return s, nil
		}
		s = strings.TrimSpace(s + " " + strings.Join(kv, " "))
	}
	if _, err := pgx.ParseConfig(s); err != nil {
		return "", fmt.Errorf("postgres_cdc: dsn %s: %s", connect.RedactURL(s), cdcParseReason(err))
	}
	return s, nil
}

// pgxConfig is the connection configuration, secrets read.
func (c *PostgresCDCConfig) pgxConfig(component string) (*pgx.ConnConfig, error) {
	s, err := c.connString()
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("postgres_cdc: dsn %s: %s", connect.RedactURL(s), cdcParseReason(err))
	}
	if strings.Contains(s, "://") {
		if c.Host != "" {
			cfg.Host = c.Host
			cfg.Fallbacks = nil
		}
		if c.Port != 0 {
			cfg.Port = uint16(c.Port)
			cfg.Fallbacks = nil
		}
		if c.User != "" {
			cfg.User = c.User
		}
		if c.Database != "" {
			cfg.Database = c.Database
		}
	}
	if c.PasswordFile != "" {
		if cfg.Password, err = connect.ReadSecretFile(c.PasswordFile); err != nil {
			return nil, fmt.Errorf("postgres_cdc: %w", err)
		}
	}
	if c.TLS != nil {
		if cfg.TLSConfig, err = c.TLS.Config(); err != nil {
			return nil, fmt.Errorf("postgres_cdc: %w", err)
		}
		if cfg.TLSConfig.ServerName == "" {
			cfg.TLSConfig.ServerName = cfg.Host
		}
		cfg.Fallbacks = nil // no silent plaintext fallback
	}
	if c.ConnectTimeout > 0 {
		cfg.ConnectTimeout = c.ConnectTimeout
	}
	cfg.RuntimeParams["application_name"] = "weir " + component
	return cfg, nil
}

func cdcParseReason(err error) string {
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

// NewSource implements pipeline.SourceConfig. It connects, checks
// wal_level, creates the publication when missing and checks the slot
// before returning, so a wrong address, refused credentials or a server
// without logical replication fail the start with a clear error.
// Streaming (and the snapshot) start at the first Read, after Seek.
func (c *PostgresCDCConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	component := b.Component
	if component == "" {
		component = fmt.Sprintf("%s/sources[%d]/postgres_cdc", b.Pipeline, b.Index)
	}
	cfg, err := c.pgxConfig(component)
	if err != nil {
		return nil, err
	}
	batch := b.BatchSize
	if batch <= 0 {
		batch = pipeline.DefaultBatchSize
	}
	s := &cdcSource{cfg: *c, connCfg: cfg, component: component, batch: batch, logger: b.Logger, now: b.Now}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.Publication == "" {
		s.cfg.Publication = "weir_" + strings.ReplaceAll(b.Pipeline, "-", "_") + "_" + strconv.Itoa(b.Index)
		if len(s.cfg.Publication) > 63 {
			s.cfg.Publication = s.cfg.Publication[:63]
		}
	}
	if s.cfg.Slot == "" {
		s.cfg.Slot = s.cfg.Publication
	}
	if s.cfg.StatusInterval <= 0 {
		s.cfg.StatusInterval = 10 * time.Second
	}
	s.safeDSN = connect.RedactURL(c.DSN)
	if s.safeDSN == "" {
		s.safeDSN = fmt.Sprintf("host=%s port=%d dbname=%s", cfg.Host, cfg.Port, cfg.Database)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// cdcSource implements pipeline.Source and pipeline.Positioned. Read,
// Position and Seek run on the runtime's reader goroutine; the acks and
// Close on others.
type cdcSource struct {
	cfg       PostgresCDCConfig
	connCfg   *pgx.ConnConfig
	component string
	safeDSN   string
	batch     int
	logger    *slog.Logger
	now       func() time.Time

	slotLSN     pglogrepl.LSN // the slot's confirmed flush LSN at start; 0 when it did not exist
	slotCreated bool          // NewSource created the slot

	seeked bool
	pos    cdcPosition // after the last record Read returned
	rest   *cdcChunk   // what the last Read did not take of a chunk

	acked atomic.Uint64 // LSN that the last committed checkpoint covers

	startOnce sync.Once
	stream    *cdcStream
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// cdcPosition is where the source is, as saved in checkpoints.
type cdcPosition struct {
	// LSN is the end of the last transaction whose changes were all read
	// (or the slot's start): the replication restarts there.
	LSN pglogrepl.LSN
	// Txn, when not zero, is the commit LSN of the next transaction, of
	// which Skip changes were read already.
	Txn  pglogrepl.LSN
	Skip int64
	// Snapshot: the initial snapshot is under way (Skip rows read of it).
	Snapshot bool
}

type cdcPositionJSON struct {
	LSN      string `json:"lsn"`
	Txn      string `json:"txn,omitempty"`
	Skip     int64  `json:"skip,omitempty"`
	Snapshot bool   `json:"snapshot,omitempty"`
}

// MarshalJSON writes LSNs in PostgreSQL's notation.
func (p cdcPosition) MarshalJSON() ([]byte, error) {
	j := cdcPositionJSON{LSN: p.LSN.String(), Skip: p.Skip, Snapshot: p.Snapshot}
	if p.Txn != 0 {
		j.Txn = p.Txn.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *cdcPosition) UnmarshalJSON(b []byte) error {
	var j cdcPositionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	lsn, err := pglogrepl.ParseLSN(j.LSN)
	if err != nil {
		return fmt.Errorf("lsn %q: %w", j.LSN, err)
	}
	*p = cdcPosition{LSN: lsn, Skip: j.Skip, Snapshot: j.Snapshot}
	if j.Txn != "" {
		if p.Txn, err = pglogrepl.ParseLSN(j.Txn); err != nil {
			return fmt.Errorf("txn %q: %w", j.Txn, err)
		}
	}
	if p.Skip < 0 || (p.Skip > 0 && p.Txn == 0 && !p.Snapshot) {
		return fmt.Errorf("bad position %s", b)
	}
	return nil
}

// Position implements pipeline.Positioned.
func (s *cdcSource) Position() ([]byte, error) { return json.Marshal(s.pos) }

// Seek implements pipeline.Positioned.
func (s *cdcSource) Seek(_ context.Context, pos []byte) error {
	var p cdcPosition
	if err := json.Unmarshal(pos, &p); err != nil {
		return fmt.Errorf("postgres_cdc: position: %w", err)
	}
	s.pos, s.seeked = p, true
	return nil
}

// Read implements pipeline.Source.
func (s *cdcSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	s.startOnce.Do(s.start)
	if s.rest == nil {
		var c cdcChunk
		var ok bool
		select {
		case c, ok = <-s.stream.out:
		case <-ctx.Done():
			return nil, nil
		}
		if !ok {
			return nil, s.stream.failure()
		}
		s.rest = &c
	}
	timer := time.NewTimer(s.cfg.Linger)
	defer timer.Stop()
	var err error
	for s.rest != nil {
		c := s.rest
		if c.err != nil {
			if len(b.Records) == 0 {
				s.rest = nil
				err = c.err
			}
			break
		}
		room := s.batch - len(b.Records)
		k := min(room, len(c.recs))
		b.Records = append(b.Records, c.recs[:k]...)
		s.pos = c.after(k)
		if k < len(c.recs) {
			c.base, c.recs = s.pos, c.recs[k:]
			break
		}
		s.rest = nil
		if len(b.Records) >= s.batch {
			break
		}
		var next cdcChunk
		var ok bool
		select {
		case next, ok = <-s.stream.out:
		default:
			select {
			case next, ok = <-s.stream.out:
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ok {
			s.rest = &next
		}
	}
	if err != nil {
		return nil, err
	}
	lsn := s.pos.LSN
	if s.pos.Snapshot {
		lsn = 0
	}
	return func(context.Context) error { s.ack(lsn); return nil }, nil
}

// ack records that a checkpoint covering everything up to lsn committed;
// the stream confirms it to the server with its next status update.
func (s *cdcSource) ack(lsn pglogrepl.LSN) {
	for {
		cur := s.acked.Load()
		if uint64(lsn) <= cur || s.acked.CompareAndSwap(cur, uint64(lsn)) {
			return
		}
	}
}

// Close implements pipeline.Source: it sends a last status update with
// the acknowledged LSN and closes the connections.
func (s *cdcSource) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.stop == nil {
			return
		}
		s.stop()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	})
	return nil
}
