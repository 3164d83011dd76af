package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/wal"
)

// readResult is one Read, handed from the reader goroutine to the stage.
type readResult struct {
	batch *pipeline.Batch
	ack   AckFunc // at_least_once: to run once the next checkpoint commits
	pos   []byte
	wm    time.Time // a new watermark from a WatermarkSource, after the batch
	// splits a SplitSource reported: before goes ahead of the batch (Reset,
	// Added), after behind it (CaughtUp, Removed).
	splitsBefore, splitsAfter pipeline.SplitChange
	tasks                     map[string]int64 // a TaskSource's task offsets, with pos
	err                       error
}

// sourceStage runs one source: a reader goroutine calls Read (and, for
// sources that cannot replay, writes the records to the ingest WAL before
// anything downstream sees them); the stage goroutine forwards batches and
// injects barriers between them.
type sourceStage struct {
	idx        int
	id         string
	src        pipeline.Source
	positioned pipeline.Positioned // nil for sources that cannot replay
	guarantee  pipeline.Guarantee
	batchSize  int
	logger     *slog.Logger
	stats      *ComponentStats

	// Ingest WAL, for a source that cannot replay under exactly_once.
	wal      *wal.Log
	walFrom  uint64 // replay from here on start (the checkpointed position)
	seen     *idSet // message ids in the WAL, to drop redeliveries (seen_ids.go)
	seenFile string // where seen keeps the ids of truncated WAL segments
	now      func() time.Time

	lastWM time.Time // reader goroutine: the last watermark passed on

	// startPos is the position the source was restored to (the checkpointed
	// one, or the WAL index replay starts at). A barrier that comes before
	// the first Read returns carries it: never an empty position, which
	// would make the next restart start over.
	startPos []byte

	out     chan<- message
	align   *aligner
	trigger chan barrierRequest

	// returned counts Reads that returned (set by the reader goroutine);
	// forwarded counts those the stage has passed on (stage goroutine only).
	// A barrier injected when forwarded >= n covers the first n Reads.
	returned  atomic.Uint64
	forwarded uint64
}

// walPosition is the checkpointed position of a WAL-fed source.
type walPosition struct {
	WALIndex uint64 `json:"wal_index"`
}

func (s *sourceStage) run(ctx context.Context) error {
	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	reads := make(chan readResult, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readLoop(readCtx, reads)
	}()
	defer func() { cancelRead(); <-readerDone }()

	pos := s.startPos
	var tasks map[string]int64
	var pending []AckFunc
	in := reads
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-s.trigger:
			b := &barrier{id: req.id, final: req.final, position: pos, acks: pending, forwarded: s.forwarded, tasks: tasks}
			pending = nil
			if !s.send(ctx, message{kind: msgBarrier, barrier: b, source: s.idx}) {
				return nil
			}
			select {
			case <-s.align.arrive(req.id):
			case <-ctx.Done():
				return nil
			}
			if req.final {
				return nil // nothing more is read after the final barrier
			}
		case rr := <-in:
			s.forwarded++
			if rr.err == io.EOF {
				in = nil
				if !s.send(ctx, message{kind: msgEOF, source: s.idx}) {
					return nil
				}
				continue
			}
			if rr.err != nil {
				return fmt.Errorf("%s: %w", s.id, rr.err)
			}
			pos = rr.pos
			if rr.tasks != nil {
				tasks = rr.tasks
			}
			if rr.ack != nil {
				pending = append(pending, rr.ack)
			}
			if !rr.splitsBefore.Empty() && !s.send(ctx, message{kind: msgSplits, source: s.idx, splits: rr.splitsBefore}) {
				return nil
			}
			if len(rr.batch.Records) > 0 || len(rr.batch.Dead) > 0 {
				s.stats.addOut(len(rr.batch.Records))
				if !s.send(ctx, message{kind: msgBatch, batch: rr.batch}) {
					return nil
				}
			}
			if !rr.splitsAfter.Empty() && !s.send(ctx, message{kind: msgSplits, source: s.idx, splits: rr.splitsAfter}) {
				return nil
			}
			if !rr.wm.IsZero() && !s.send(ctx, message{kind: msgWatermark, source: s.idx, wm: rr.wm}) {
				return nil
			}
		}
	}
}

func (s *sourceStage) send(ctx context.Context, m message) bool {
	select {
	case s.out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *sourceStage) deliver(ctx context.Context, reads chan<- readResult, rr readResult) bool {
	select {
	case reads <- rr:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *sourceStage) readLoop(ctx context.Context, reads chan<- readResult) {
	if s.wal != nil {
		if err := s.replayWAL(ctx, reads); err != nil {
			s.deliver(ctx, reads, readResult{err: err})
			return
		}
	}
	var walBuf, walScratch []byte
	for {
		b := &pipeline.Batch{Records: make([]*pipeline.Record, 0, s.batchSize)}
		ack, err := s.src.Read(ctx, b)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.deliver(ctx, reads, readResult{err: fmt.Errorf("read: %w", err)})
			return
		}
		for _, r := range b.Records {
			r.Source = s.idx
		}
		rr := readResult{batch: b}
		switch {
		case s.wal != nil:
			readAt := s.now()
			added := s.dropRedeliveries(b, readAt)
			// The append and the ack that follows it are not cancelled with
			// the pipeline: an Append abandoned while its group fsync is under
			// way may still land in the WAL, and a batch in the WAL that was
			// never acknowledged would be both replayed and redelivered.
			detached, cancelDetached := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			if len(b.Records) > 0 {
				walBuf, walScratch = encodeWALBatch(walBuf[:0], b.Records, readAt, walScratch)
				first, werr := s.wal.Append(detached, walBuf)
				if werr != nil {
					cancelDetached()
					s.deliver(ctx, reads, readResult{err: fmt.Errorf("ingest wal: %w", werr)})
					return
				}
				s.seen.markStored(added, first)
				s.walFrom = first + 1
			}
			rr.pos, _ = json.Marshal(walPosition{WALIndex: s.walFrom})
			// Durable in the WAL: safe to acknowledge upstream now.
			if ack != nil {
				if aerr := ack(detached); aerr != nil {
					// The broker will redeliver; the WAL drops the duplicate by id.
					s.logger.Warn("ack failed; the message will be redelivered and dropped as a duplicate", "component", s.id, "err", aerr)
				}
			}
			cancelDetached()
		case s.positioned != nil:
			p, perr := s.positioned.Position()
			if perr != nil {
				s.deliver(ctx, reads, readResult{err: fmt.Errorf("position: %w", perr)})
				return
			}
			rr.pos = p
			rr.ack = ack
			if ts, ok := s.src.(pipeline.TaskSource); ok {
				rr.tasks = ts.TaskOffsets()
			}
		case s.guarantee == pipeline.AtMostOnce:
			if ack != nil {
				if aerr := ack(ctx); aerr != nil {
					s.logger.Warn("ack failed", "component", s.id, "err", aerr)
				}
			}
		default:
			rr.ack = ack
		}
		if ss, ok := s.src.(pipeline.SplitSource); ok {
			c := ss.SplitChanges()
			rr.splitsBefore = pipeline.SplitChange{Reset: c.Reset, Added: c.Added, Known: c.Known}
			rr.splitsAfter = pipeline.SplitChange{CaughtUp: c.CaughtUp, Removed: c.Removed, Finished: c.Finished, Progress: c.Progress}
		}
		if ws, ok := s.src.(pipeline.WatermarkSource); ok {
			if wm, ok := ws.Watermark(); ok && wm.After(s.lastWM) {
				rr.wm, s.lastWM = wm, wm
			}
		}
		s.returned.Add(1)
		if !s.deliver(ctx, reads, rr) {
			return
		}
		if errors.Is(err, io.EOF) {
			s.deliver(ctx, reads, readResult{err: io.EOF})
			return
		}
	}
}

// dropRedeliveries removes records whose message id is already in the WAL
// (a broker redelivering what weir had stored but not yet acknowledged),
// within the source's dedupe_window, and remembers the ids of the others
// as read at readAt. It returns how many ids it remembered.
func (s *sourceStage) dropRedeliveries(b *pipeline.Batch, readAt time.Time) int {
	kept, added, dropped := s.seen.filter(b.Records, readAt)
	b.Records = kept
	for range dropped {
		s.stats.addDuplicate()
	}
	return added
}

// replayWAL re-reads the ingest WAL: entries before the checkpointed
// position only rebuild the set of seen message ids; entries from it on
// are replayed downstream, as they were before the crash.
func (s *sourceStage) replayWAL(ctx context.Context, reads chan<- readResult) error {
	from := s.wal.FirstIndex()
	if from > s.walFrom {
		return fmt.Errorf("ingest wal: checkpoint needs index %d but the log starts at %d", s.walFrom, from)
	}
	rd, err := s.wal.NewReader(from)
	if err != nil {
		return fmt.Errorf("ingest wal: %w", err)
	}
	defer rd.Close()
	replayed := 0
	for {
		idx, data, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("ingest wal: %w", err)
		}
		recs, readAt, err := decodeWALBatch(append([]byte(nil), data...))
		if err != nil {
			return fmt.Errorf("ingest wal: entry %d: %w", idx, err)
		}
		now := s.now()
		if readAt.IsZero() {
			readAt = now // written before the WAL kept read times: as if read now
		}
		for _, r := range recs {
			if r.Origin.ID != "" {
				s.seen.add(r.Origin.ID, readAt.UnixNano(), idx, now)
			}
		}
		if idx < s.walFrom {
			continue // before the checkpoint: only the message ids count
		}
		for _, r := range recs {
			r.Source = s.idx
		}
		s.walFrom = idx + 1
		pos, _ := json.Marshal(walPosition{WALIndex: s.walFrom})
		if !s.deliver(ctx, reads, readResult{batch: &pipeline.Batch{Records: recs}, pos: pos}) {
			return nil
		}
		replayed += len(recs)
	}
	if replayed > 0 {
		s.logger.Info("replayed ingest WAL", "component", s.id, "records", replayed)
	}
	return nil
}
