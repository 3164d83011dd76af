package sources

// The replication side of the postgres_cdc source: the slot and the
// publication, the initial snapshot, and the goroutine that owns the
// replication connection, decodes pgoutput into records and answers the
// server.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// cdcChunk is a run of records handed from the stream to Read, all of one
// transaction (or of the snapshot), with the position they start at.
type cdcChunk struct {
	recs []*pipeline.Record
	base cdcPosition // position before recs
	// end, when not zero, is the position once every record of the chunk
	// is taken: the transaction's end LSN (or a keepalive's, or the
	// snapshot's consistent point).
	end pglogrepl.LSN
	err error
}

// after is the position once the first k records of c are taken.
func (c *cdcChunk) after(k int) cdcPosition {
	if k == len(c.recs) && c.end != 0 {
		return cdcPosition{LSN: c.end}
	}
	p := c.base
	p.Skip += int64(k)
	return p
}

// cdcRelation is a table as the last Relation message described it.
type cdcRelation struct {
	table string // "schema.name"
	cols  []*pglogrepl.RelationMessageColumn
}

// cdcStream owns the replication connection. It runs on its own goroutine
// and hands chunks to Read over out.
type cdcStream struct {
	src    *cdcSource
	logger *slog.Logger
	out    chan cdcChunk
	err    error // why out was closed; read after it was

	conn       *pgconn.PgConn
	cur        cdcPosition // after every chunk sent on out
	rels       map[uint32]*cdcRelation
	dec        *cdcDecoder
	inTxn      bool
	replaying  int64 // changes of cur.Txn still to skip (read before a restart)
	xid        int64
	commit     time.Time
	chunk      []*pipeline.Record
	lastSent   pglogrepl.LSN // last flush LSN sent in a status update
	streaming  bool          // conn is in the replication stream (status updates allowed)
	nextStatus time.Time
}

func (st *cdcStream) failure() error {
	if st.err != nil {
		return st.err
	}
	return errors.New("postgres_cdc: stream stopped")
}

// cdcPermanent reports errors that retrying does not fix: refused
// credentials, a missing slot, publication or database, a slot that was
// invalidated, too few privileges.
func cdcPermanent(err error) bool {
	if pipeline.IsCertificateError(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000", "3D000", "42501", "42704", "55000", "42P01", "0A000", "22023", "42601":
			return true
		}
	}
	var perm *cdcError
	return errors.As(err, &perm) || strings.Contains(err.Error(), "password authentication failed")
}

// cdcError is a failure of the stream itself (a replay that does not
// match, a change of an unknown table): never retried.
type cdcError struct{ msg string }

func (e *cdcError) Error() string { return "postgres_cdc: " + e.msg }

func cdcErrorf(format string, args ...any) error { return &cdcError{fmt.Sprintf(format, args...)} }

// connectQuery opens a normal connection, retrying within ctx.
func (s *cdcSource) connectQuery(ctx context.Context) (*pgx.Conn, error) {
	return cdcRetry(ctx, s, func() (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, s.connCfg) })
}

// connectReplication opens a replication connection, retrying within ctx.
func (s *cdcSource) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	cfg := s.connCfg.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	return cdcRetry(ctx, s, func() (*pgconn.PgConn, error) { return pgconn.ConnectConfig(ctx, cfg) })
}

func cdcRetry[T any](ctx context.Context, s *cdcSource, dial func() (T, error)) (T, error) {
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	for {
		c, err := dial()
		if err == nil {
			return c, nil
		}
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) && ce.Unwrap() != nil {
			err = ce.Unwrap()
		}
		err = fmt.Errorf("postgres_cdc: connect to %s: %w", s.safeDSN, err)
		if cdcPermanent(err) || ctx.Err() != nil {
			return c, err
		}
		d := bo.Next()
		s.logger.Warn("postgres_cdc: connect failed; retrying", "dsn", s.safeDSN, "attempt", bo.Attempts(), "in", d, "err", err)
		if connect.SleepContext(ctx, d) != nil {
			return c, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		}
	}
}

// prepare runs at start-up: wal_level, the publication, the slot.
func (s *cdcSource) prepare(ctx context.Context) error {
	conn, err := s.connectQuery(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("postgres_cdc: show wal_level: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("postgres_cdc: the server has wal_level = %s; logical replication needs wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)", level)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("postgres_cdc: look up publication: %w", err)
	}
	if !exists {
		sql := "CREATE PUBLICATION " + s.cfg.Publication + " FOR ALL TABLES"
		if len(s.cfg.Tables) > 0 {
			names := make([]string, len(s.cfg.Tables))
			for i, t := range s.cfg.Tables {
				id, _ := cdcTableIdent(t)
				names[i] = id.Sanitize()
			}
			sql = "CREATE PUBLICATION " + s.cfg.Publication + " FOR TABLE " + strings.Join(names, ", ")
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42710" { // created meanwhile
				return fmt.Errorf("postgres_cdc: %s: %w", sql, err)
			}
		}
		s.logger.Info("postgres_cdc: publication created", "publication", s.cfg.Publication, "tables", s.cfg.Tables)
	}
	var plugin, db string
	var confirmed *string
	err = conn.QueryRow(ctx, "SELECT plugin, database, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Slot).Scan(&plugin, &db, &confirmed)
	switch {
	case errors.Is(err, pgx.ErrNoRows) && s.cfg.Snapshot:
		return nil // created with the snapshot, at the first Read
	case errors.Is(err, pgx.ErrNoRows):
		// Created now, so that the changes from the start on are kept; if a
		// checkpoint turns out to need an older position, the first Read
		// refuses it (and drops this slot again).
		var lsn string
		if err := conn.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", s.cfg.Slot).Scan(&lsn); err != nil {
			return fmt.Errorf("postgres_cdc: create replication slot %q: %w", s.cfg.Slot, err)
		}
		if s.slotLSN, err = pglogrepl.ParseLSN(lsn); err != nil {
			return fmt.Errorf("postgres_cdc: create replication slot %q: lsn %q: %w", s.cfg.Slot, lsn, err)
		}
		s.slotCreated = true
		s.logger.Info("postgres_cdc: replication slot created", "slot", s.cfg.Slot, "lsn", lsn)
		return nil
	case err != nil:
		return fmt.Errorf("postgres_cdc: look up slot: %w", err)
	}
	if plugin != "pgoutput" {
		return fmt.Errorf("postgres_cdc: slot %q uses plugin %q; it needs pgoutput (drop it, or name another slot)", s.cfg.Slot, plugin)
	}
	if db != s.connCfg.Database {
		return fmt.Errorf("postgres_cdc: slot %q belongs to database %q, not %q", s.cfg.Slot, db, s.connCfg.Database)
	}
	if confirmed != nil {
		if s.slotLSN, err = pglogrepl.ParseLSN(*confirmed); err != nil {
			return fmt.Errorf("postgres_cdc: slot %q: confirmed_flush_lsn %q: %w", s.cfg.Slot, *confirmed, err)
		}
	}
	if s.slotLSN == 0 {
		return fmt.Errorf("postgres_cdc: slot %q has no confirmed flush LSN (invalidated?)", s.cfg.Slot)
	}
	return nil
}

// start launches the stream goroutine; it runs once, at the first Read.
func (s *cdcSource) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	if !s.pos.Snapshot {
		s.acked.Store(uint64(s.pos.LSN))
	}
	st := &cdcStream{src: s, logger: s.logger, out: make(chan cdcChunk, 8), rels: map[uint32]*cdcRelation{}, dec: newCDCDecoder()}
	s.stream = st
	go func() {
		defer close(s.done)
		defer close(st.out)
		st.err = st.run(ctx)
		if st.conn != nil {
			st.sendStatus(true)
			st.conn.Close(context.Background())
		}
	}()
}

// run is the stream goroutine: begin (slot, snapshot), then stream,
// reconnecting after connection losses.
func (st *cdcStream) run(ctx context.Context) error {
	s := st.src
	if err := st.begin(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		st.fail(ctx, err)
		return err
	}
	bo := connect.Backoff{Max: s.cfg.MaxReconnectDelay}
	for {
		began := time.Now()
		err := st.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if st.conn != nil {
			st.conn.Close(context.Background())
			st.conn, st.streaming = nil, false
		}
		if cdcPermanent(err) {
			err = st.explain(err)
			st.fail(ctx, err)
			return err
		}
		if time.Since(began) > time.Minute {
			bo.Reset()
		}
		d := bo.Next()
		s.logger.Warn("postgres_cdc: replication connection lost; reconnecting", "slot", s.cfg.Slot, "from", st.cur.LSN.String(), "attempt", bo.Attempts(), "in", d, "err", err)
		if connect.SleepContext(ctx, d) != nil {
			return nil
		}
	}
}

// explain adds what a permanent streaming error means for the user.
func (st *cdcStream) explain(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42704" && strings.Contains(pe.Message, "replication slot"):
			return fmt.Errorf("postgres_cdc: replication slot %q no longer exists (dropped while weir ran?); the changes after LSN %s went with it and cannot be read again. To start over, remove the pipeline's checkpoint (a new data_dir) and, to re-read the tables, set snapshot: true: %w",
				st.src.cfg.Slot, st.cur.LSN, err)
		case pe.Code == "55000":
			return fmt.Errorf("postgres_cdc: replication slot %q cannot stream from LSN %s (invalidated: it fell behind max_slot_wal_keep_size?); those changes are gone: %w", st.src.cfg.Slot, st.cur.LSN, err)
		}
	}
	return err
}

// fail hands err to Read.
func (st *cdcStream) fail(ctx context.Context, err error) {
	select {
	case st.out <- cdcChunk{err: err}:
	case <-ctx.Done():
	}
}

// begin finds where to stream from: the checkpoint's position, the slot's
// confirmed LSN, or a new slot (with the initial snapshot).
func (st *cdcStream) begin(ctx context.Context) error {
	s := st.src
	switch {
	case s.seeked && s.pos.Snapshot:
		s.logger.Warn("postgres_cdc: the initial snapshot was interrupted; it starts over with a new slot, and the rows it had delivered are delivered again",
			"slot", s.cfg.Slot, "rows_delivered", s.pos.Skip)
		return st.snapshot(ctx)
	case s.seeked:
		if s.slotCreated {
			if err := s.dropCreatedSlot(ctx); err != nil {
				s.logger.Warn("postgres_cdc: drop the slot created at start", "slot", s.cfg.Slot, "err", err)
			}
			return cdcErrorf("replication slot %q does not exist, but the checkpoint is at LSN %s: the changes since then cannot be read. Was the slot dropped? To start over, remove the pipeline's checkpoint (a new data_dir) and, to re-read the tables, set snapshot: true",
				s.cfg.Slot, s.pos.LSN)
		}
		st.cur = s.pos
		return nil
	case s.cfg.Snapshot:
		return st.snapshot(ctx)
	}
	st.cur = cdcPosition{LSN: s.slotLSN}
	st.send(ctx, cdcChunk{end: s.slotLSN})
	return nil
}

// dropCreatedSlot drops the slot NewSource created.
func (s *cdcSource) dropCreatedSlot(ctx context.Context) error {
	q, err := s.connectQuery(ctx)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	_, err = q.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.cfg.Slot)
	return err
}

// snapshot (re)creates the slot with an exported snapshot and reads every
// table of the publication in it, then leaves the stream at the slot's
// consistent point.
func (st *cdcStream) snapshot(ctx context.Context) error {
	s := st.src
	q, err := s.connectQuery(ctx)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	if s.slotLSN != 0 {
		var active bool
		if err := q.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Slot).Scan(&active); err == nil {
			if active {
				return cdcErrorf("replication slot %q is in use by another connection; the snapshot needs to create it anew", s.cfg.Slot)
			}
			if _, err := q.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.cfg.Slot); err != nil {
				return fmt.Errorf("postgres_cdc: drop replication slot %q for a new snapshot: %w", s.cfg.Slot, err)
			}
			s.logger.Info("postgres_cdc: replication slot dropped, to be created anew with a snapshot", "slot", s.cfg.Slot)
		}
	}
	conn, err := s.connectReplication(ctx)
	if err != nil {
		return err
	}
	st.conn = conn
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, s.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return fmt.Errorf("postgres_cdc: create replication slot %q: %w", s.cfg.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("postgres_cdc: consistent point %q: %w", res.ConsistentPoint, err)
	}
	s.logger.Info("postgres_cdc: replication slot created; reading the snapshot", "slot", s.cfg.Slot, "lsn", lsn.String(), "snapshot", res.SnapshotName)
	st.cur = cdcPosition{LSN: lsn, Snapshot: true}
	tx, err := q.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres_cdc: snapshot: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+res.SnapshotName+"'"); err != nil {
		return fmt.Errorf("postgres_cdc: snapshot: set transaction snapshot: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2", s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("postgres_cdc: snapshot: tables of publication %q: %w", s.cfg.Publication, err)
	}
	var tables []pgx.Identifier
	for rows.Next() {
		var schema, name string
		if err := rows.Scan(&schema, &name); err != nil {
			return fmt.Errorf("postgres_cdc: snapshot: %w", err)
		}
		tables = append(tables, pgx.Identifier{schema, name})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres_cdc: snapshot: %w", err)
	}
	at := s.now().UTC()
	lsnText := lsn.String()
	total := 0
	for _, t := range tables {
		n, err := st.snapshotTable(ctx, tx, t, at, lsnText)
		if err != nil {
			return err
		}
		total += n
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres_cdc: snapshot: %w", err)
	}
	s.logger.Info("postgres_cdc: snapshot read", "tables", len(tables), "rows", total)
	st.send(ctx, cdcChunk{end: lsn})
	return ctx.Err()
}

// snapshotTable reads one table's rows, in text form (so they decode as
// the stream's do), and hands them on as records with op snapshot.
func (st *cdcStream) snapshotTable(ctx context.Context, tx pgx.Tx, t pgx.Identifier, at time.Time, lsn string) (int, error) {
	rows, err := tx.Query(ctx, "SELECT * FROM "+t.Sanitize(), pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return 0, fmt.Errorf("postgres_cdc: snapshot of %s: %w", t.Sanitize(), err)
	}
	defer rows.Close()
	table := t[0] + "." + t[1]
	fds := rows.FieldDescriptions()
	n := 0
	for rows.Next() {
		raw := rows.RawValues()
		after := make(map[string]any, len(fds))
		for i, fd := range fds {
			if raw[i] == nil {
				after[fd.Name] = nil
			} else {
				after[fd.Name] = st.dec.decode(fd.DataTypeOID, raw[i])
			}
		}
		r := &pipeline.Record{Time: at, Origin: pipeline.Origin{Name: table, Offset: int64(n)}}
		fs := r.SetFields()
		fs.Set("op", "snapshot")
		fs.Set("table", table)
		fs.Set("before", nil)
		fs.Set("after", after)
		fs.Set("lsn", lsn)
		fs.Set("xid", nil)
		fs.Set("commit_time", at)
		st.chunk = append(st.chunk, r)
		n++
		if len(st.chunk) >= st.src.batch {
			if !st.send(ctx, cdcChunk{recs: st.chunk}) {
				return n, ctx.Err()
			}
			st.chunk = nil
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("postgres_cdc: snapshot of %s: %w", t.Sanitize(), err)
	}
	if len(st.chunk) > 0 {
		if !st.send(ctx, cdcChunk{recs: st.chunk}) {
			return n, ctx.Err()
		}
		st.chunk = nil
	}
	return n, nil
}

// send hands c to Read, with the current position as its base, and moves
// the position past it. While Read does not take it (backpressure), the
// server still gets a status update every status_interval, so that it
// does not time the connection out.
func (st *cdcStream) send(ctx context.Context, c cdcChunk) bool {
	c.base = st.cur
	tick := time.NewTicker(st.src.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case st.out <- c:
			st.cur = c.after(len(c.recs))
			return true
		case <-tick.C:
			st.sendStatus(true)
		case <-ctx.Done():
			return false
		}
	}
}

// sendStatus sends a standby status update with the acknowledged LSN as
// written, flushed and applied position, when it moved or force is set.
func (st *cdcStream) sendStatus(force bool) {
	if st.conn == nil || !st.streaming {
		return
	}
	acked := pglogrepl.LSN(st.src.acked.Load())
	if !force && acked == st.lastSent && time.Now().Before(st.nextStatus) {
		return
	}
	if acked == 0 {
		return // nothing confirmed yet (a snapshot under way): the slot stays where it is
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: acked, WALFlushPosition: acked, WALApplyPosition: acked})
	if err != nil {
		st.logger.Debug("postgres_cdc: status update", "err", err)
		return
	}
	st.lastSent, st.nextStatus = acked, time.Now().Add(st.src.cfg.StatusInterval)
}

// session streams on one replication connection until it fails.
func (st *cdcStream) session(ctx context.Context) error {
	s := st.src
	if st.conn == nil {
		conn, err := s.connectReplication(ctx)
		if err != nil {
			return err
		}
		st.conn = conn
	}
	st.inTxn, st.chunk, st.replaying, st.streaming = false, nil, 0, false
	err := pglogrepl.StartReplication(ctx, st.conn, s.cfg.Slot, st.cur.LSN, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + s.cfg.Publication + "'"},
	})
	if err != nil {
		return fmt.Errorf("postgres_cdc: start replication on slot %q at %s: %w", s.cfg.Slot, st.cur.LSN, err)
	}
	st.streaming = true
	s.logger.Info("postgres_cdc: streaming", "slot", s.cfg.Slot, "publication", s.cfg.Publication, "from", st.cur.LSN.String())
	st.sendStatus(true)
	for {
		st.sendStatus(false)
		rctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		msg, err := st.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		case *pgproto3.CopyData:
			if err := st.handle(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.CopyDone:
			return errors.New("postgres_cdc: the server ended the replication stream")
		}
	}
}

// handle takes one CopyData message of the stream.
func (st *cdcStream) handle(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return cdcErrorf("keepalive: %v", err)
		}
		if k.ReplyRequested {
			st.sendStatus(true)
		}
		// Between transactions, everything before the server's WAL end has
		// been sent: a quiet stream moves on with it.
		if !st.inTxn && st.cur.Txn == 0 && !st.cur.Snapshot && k.ServerWALEnd > st.cur.LSN {
			st.send(ctx, cdcChunk{end: k.ServerWALEnd})
		}
		return nil
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return cdcErrorf("xlog data: %v", err)
		}
		return st.message(ctx, x)
	}
	return nil
}

// message decodes one pgoutput message.
func (st *cdcStream) message(ctx context.Context, x pglogrepl.XLogData) error {
	lm, err := pglogrepl.Parse(x.WALData)
	if err != nil {
		return cdcErrorf("decode pgoutput message at %s: %v", x.WALStart, err)
	}
	switch m := lm.(type) {
	case *pglogrepl.RelationMessage:
		table := m.Namespace + "." + m.RelationName
		if old, ok := st.rels[m.RelationID]; ok && !cdcSameColumns(old.cols, m.Columns) {
			st.logger.Info("postgres_cdc: table changed; records now carry its new columns", "table", table, "columns", len(m.Columns))
		}
		st.rels[m.RelationID] = &cdcRelation{table: table, cols: m.Columns}
	case *pglogrepl.BeginMessage:
		if st.inTxn {
			return cdcErrorf("begin of transaction %d inside another", m.Xid)
		}
		st.inTxn, st.xid, st.commit = true, int64(m.Xid), m.CommitTime.UTC()
		switch {
		case st.cur.Txn == 0:
			st.cur.Txn, st.cur.Skip = m.FinalLSN, 0
		case st.cur.Txn == m.FinalLSN:
			st.replaying = st.cur.Skip // read in part before: skip what was handed on
		default:
			return cdcErrorf("replaying from LSN %s, the first transaction commits at %s, but the one read in part before commits at %s (%d of its changes were handed on): the slot's history does not match the checkpoint",
				st.cur.LSN, m.FinalLSN, st.cur.Txn, st.cur.Skip)
		}
	case *pglogrepl.CommitMessage:
		if !st.inTxn {
			return cdcErrorf("commit without begin at %s", m.CommitLSN)
		}
		if st.replaying > 0 {
			return cdcErrorf("transaction committed at %s has fewer changes than the %d read of it before", m.CommitLSN, st.cur.Skip)
		}
		recs := st.chunk
		st.chunk, st.inTxn = nil, false
		if !st.send(ctx, cdcChunk{recs: recs, end: m.TransactionEndLSN}) {
			return ctx.Err()
		}
	case *pglogrepl.InsertMessage:
		rel, err := st.relation(m.RelationID)
		if err != nil {
			return err
		}
		after, _ := st.tuple(rel, m.Tuple, false)
		return st.change(ctx, x, "insert", rel, nil, after, nil)
	case *pglogrepl.UpdateMessage:
		rel, err := st.relation(m.RelationID)
		if err != nil {
			return err
		}
		var before map[string]any
		if m.OldTuple != nil {
			before, _ = st.tuple(rel, m.OldTuple, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey)
		}
		after, unchanged := st.tuple(rel, m.NewTuple, false)
		return st.change(ctx, x, "update", rel, before, after, unchanged)
	case *pglogrepl.DeleteMessage:
		rel, err := st.relation(m.RelationID)
		if err != nil {
			return err
		}
		before, _ := st.tuple(rel, m.OldTuple, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey)
		return st.change(ctx, x, "delete", rel, before, nil, nil)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			rel, err := st.relation(id)
			if err != nil {
				return err
			}
			if err := st.change(ctx, x, "truncate", rel, nil, nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func cdcSameColumns(a, b []*pglogrepl.RelationMessageColumn) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].DataType != b[i].DataType || a[i].Flags != b[i].Flags {
			return false
		}
	}
	return true
}

func (st *cdcStream) relation(id uint32) (*cdcRelation, error) {
	rel, ok := st.rels[id]
	if !ok {
		return nil, cdcErrorf("a change of relation %d, which no relation message described", id)
	}
	return rel, nil
}

// tuple decodes a row. keyOnly (an old key tuple) keeps the columns of the
// replica identity only: pgoutput sends the others as null. unchanged
// lists the columns PostgreSQL did not send (unchanged TOAST values).
func (st *cdcStream) tuple(rel *cdcRelation, t *pglogrepl.TupleData, keyOnly bool) (row map[string]any, unchanged []any) {
	if t == nil {
		return nil, nil
	}
	row = make(map[string]any, len(t.Columns))
	for i, c := range t.Columns {
		if i >= len(rel.cols) {
			break
		}
		col := rel.cols[i]
		if keyOnly && col.Flags&1 == 0 {
			continue
		}
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			row[col.Name] = nil
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, col.Name)
		case pglogrepl.TupleDataTypeText:
			row[col.Name] = st.dec.decode(col.DataType, c.Data)
		case pglogrepl.TupleDataTypeBinary:
			row[col.Name] = string(c.Data)
		}
	}
	return row, unchanged
}

// change adds one change record to the transaction's chunk, skipping the
// ones a replay already handed on, and hands the chunk on when full.
func (st *cdcStream) change(ctx context.Context, x pglogrepl.XLogData, op string, rel *cdcRelation, before, after map[string]any, unchanged []any) error {
	if !st.inTxn {
		return cdcErrorf("a change of %s outside a transaction", rel.table)
	}
	if st.replaying > 0 {
		st.replaying--
		return nil
	}
	r := &pipeline.Record{Time: st.commit, Origin: pipeline.Origin{Name: rel.table, Offset: int64(x.WALStart)}}
	fs := r.SetFields()
	fs.Set("op", op)
	fs.Set("table", rel.table)
	if before != nil {
		fs.Set("before", before)
	} else {
		fs.Set("before", nil)
	}
	if after != nil {
		fs.Set("after", after)
	} else {
		fs.Set("after", nil)
	}
	fs.Set("lsn", x.WALStart.String())
	fs.Set("xid", st.xid)
	fs.Set("commit_time", st.commit)
	if len(unchanged) > 0 {
		fs.Set("unchanged", unchanged)
	}
	st.chunk = append(st.chunk, r)
	if len(st.chunk) >= st.src.batch {
		recs := st.chunk
		st.chunk = nil
		if !st.send(ctx, cdcChunk{recs: recs}) {
			return ctx.Err()
		}
	}
	return nil
}
