package sinks

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/internal/kafkaconn"
	"github.com/weirhq/weir/internal/killpoint"
	"github.com/weirhq/weir/pipeline"
)

// The staging file of the exactly-once kafka sink is a sequence of
// entries, each:
//
//	uvarint  length of the rest of the entry
//	uvarint  len(topic), topic
//	varint   timestamp, unix milliseconds (0: none)
//	uvarint  len(key)+1, key (0: no key)
//	uvarint  len(value), value
//	uvarint  header count, then per header: uvarint len(name), name,
//	         uvarint len(value), value
//
// The token records the entry count, the byte length and the CRC-32C of
// the whole file; a file that does not match is never produced from.

var kafkaCRCTable = crc32.MakeTable(crc32.Castagnoli)

// kafkaToken is the sink's commit token, stored in the checkpoint.
type kafkaToken struct {
	Instance    string `json:"instance"`
	Checkpoint  uint64 `json:"checkpoint"`
	File        string `json:"file,omitempty"`
	Count       int    `json:"count"`
	Bytes       int64  `json:"bytes,omitempty"`
	CRC         uint32 `json:"crc,omitempty"`
	MarkerTopic string `json:"marker_topic,omitempty"`
	// Tasks are the task truths that commit with the records (a sink that
	// keeps tasks; see kafka_tasks.go).
	Tasks []kafkaTaskTruth `json:"tasks,omitempty"`
}

// kafkaMarker is the metadata of the sink group's committed offset.
type kafkaMarker struct {
	Instance   string `json:"weir_instance"`
	Checkpoint uint64 `json:"weir_checkpoint"`
}

type kafkaStagingFile struct {
	name        string
	f           *os.File
	w           *bufio.Writer
	crc         hash.Hash32
	count       int
	bytes       int64
	markerTopic string
}

func (s *KafkaSink) stageRecords(b *pipeline.Batch) error {
	if s.instance == "" {
		return errors.New("kafka: Write before Recover")
	}
	for _, r := range b.Records {
		topic, err := s.write.topicOf(r)
		if err != nil {
			return err
		}
		key, err := s.write.keyOf(r)
		if err != nil {
			return err
		}
		hs, err := s.write.headersOf(r)
		if err != nil {
			return err
		}
		if s.stage == nil {
			if err := s.openStage(topic); err != nil {
				return err
			}
		}
		s.body = appendKafkaEntryHead(s.body[:0], topic, r.Time, key)
		valueStart := len(s.body)
		s.body = r.AppendJSON(s.body)
		s.body = appendKafkaEntryTail(s.body, valueStart, hs)
		s.entry = binary.AppendUvarint(s.entry[:0], uint64(len(s.body)))
		s.entry = append(s.entry, s.body...)
		if _, err := s.stage.w.Write(s.entry); err != nil {
			return fmt.Errorf("kafka: write staging file: %w", err)
		}
		s.stage.crc.Write(s.entry)
		s.stage.count++
		s.stage.bytes += int64(len(s.entry))
	}
	return nil
}

func (s *KafkaSink) openStage(markerTopic string) error {
	s.stageSeq++
	name := fmt.Sprintf("%s-%d-%06d.stage", s.instance, time.Now().UnixNano(), s.stageSeq)
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("kafka: create staging file: %w", err)
	}
	s.stage = &kafkaStagingFile{name: name, f: f, w: bufio.NewWriterSize(f, 256<<10), crc: crc32.New(kafkaCRCTable), markerTopic: markerTopic}
	return nil
}

// appendKafkaEntryHead appends an entry's body up to the value, whose
// bytes the caller appends next; appendKafkaEntryTail then inserts the
// value's length (the value starts at valueStart) and appends the headers.
func appendKafkaEntryHead(dst []byte, topic string, ts time.Time, key []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(topic)))
	dst = append(dst, topic...)
	var ms int64
	if !ts.IsZero() {
		ms = ts.UnixMilli()
	}
	dst = binary.AppendVarint(dst, ms)
	if key == nil {
		return binary.AppendUvarint(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(key))+1)
	return append(dst, key...)
}

func appendKafkaEntryTail(dst []byte, valueStart int, hs []kgo.RecordHeader) []byte {
	var n [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(n[:], uint64(len(dst)-valueStart))
	dst = append(dst, n[:k]...)
	copy(dst[valueStart+k:], dst[valueStart:len(dst)-k])
	copy(dst[valueStart:], n[:k])
	dst = binary.AppendUvarint(dst, uint64(len(hs)))
	for _, h := range hs {
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return dst
}

// appendKafkaEntry appends r as one whole entry (length prefix included).
func appendKafkaEntry(dst []byte, r *kgo.Record) []byte {
	body := appendKafkaEntryHead(nil, r.Topic, r.Timestamp, r.Key)
	start := len(body)
	body = append(body, r.Value...)
	body = appendKafkaEntryTail(body, start, r.Headers)
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

var errKafkaBadEntry = errors.New("kafka: staging file: malformed entry")

// readKafkaEntry decodes one entry. The record's slices are fresh: the producer
// keeps them until it has sent the record.
func readKafkaEntry(rd *bufio.Reader, maxLen int) (*kgo.Record, error) {
	n, err := binary.ReadUvarint(rd)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if n == 0 || n > uint64(maxLen) {
		return nil, errKafkaBadEntry
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return nil, err
	}
	return decodeKafkaEntry(body)
}

func decodeKafkaEntry(b []byte) (*kgo.Record, error) {
	bytesOf := func(n uint64) ([]byte, bool) {
		if n > uint64(len(b)) {
			return nil, false
		}
		v := b[:n:n]
		b = b[n:]
		return v, true
	}
	uv := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	r := &kgo.Record{}
	n, ok := uv()
	topic, ok2 := bytesOf(n)
	if !ok || !ok2 {
		return nil, errKafkaBadEntry
	}
	r.Topic = string(topic)
	ts, k := binary.Varint(b)
	if k <= 0 {
		return nil, errKafkaBadEntry
	}
	b = b[k:]
	if ts != 0 {
		r.Timestamp = time.UnixMilli(ts)
	}
	if n, ok = uv(); !ok {
		return nil, errKafkaBadEntry
	}
	if n > 0 {
		if r.Key, ok = bytesOf(n - 1); !ok {
			return nil, errKafkaBadEntry
		}
	}
	if n, ok = uv(); !ok {
		return nil, errKafkaBadEntry
	}
	if r.Value, ok = bytesOf(n); !ok {
		return nil, errKafkaBadEntry
	}
	nh, ok := uv()
	if !ok || nh > uint64(len(b)) {
		return nil, errKafkaBadEntry
	}
	for range nh {
		kn, ok := uv()
		if !ok {
			return nil, errKafkaBadEntry
		}
		key, ok := bytesOf(kn)
		if !ok {
			return nil, errKafkaBadEntry
		}
		vn, ok := uv()
		if !ok {
			return nil, errKafkaBadEntry
		}
		val, ok := bytesOf(vn)
		if !ok {
			return nil, errKafkaBadEntry
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(key), Value: val})
	}
	if len(b) != 0 {
		return nil, errKafkaBadEntry
	}
	return r, nil
}

// PreCommit implements pipeline.Committer: it fsyncs what was staged since
// the last PreCommit and returns the token that commits it.
func (s *KafkaSink) PreCommit(_ context.Context, checkpoint uint64) ([]byte, error) {
	tok, err := s.seal(checkpoint)
	if err != nil {
		return nil, err
	}
	return json.Marshal(tok)
}

// seal fsyncs what was staged since the last PreCommit into a token.
func (s *KafkaSink) seal(checkpoint uint64) (kafkaToken, error) {
	tok := kafkaToken{Instance: s.instance, Checkpoint: checkpoint}
	fail := func(err error) (kafkaToken, error) { return tok, err }
	if st := s.stage; st != nil {
		s.stage = nil
		if err := st.w.Flush(); err != nil {
			st.f.Close()
			return fail(fmt.Errorf("kafka: write staging file: %w", err))
		}
		if err := st.f.Sync(); err != nil {
			st.f.Close()
			return fail(fmt.Errorf("kafka: fsync staging file: %w", err))
		}
		if err := st.f.Close(); err != nil {
			return fail(fmt.Errorf("kafka: close staging file: %w", err))
		}
		if err := durable.SyncDir(s.dir); err != nil {
			return fail(fmt.Errorf("kafka: fsync staging dir: %w", err))
		}
		tok.File, tok.Count, tok.Bytes, tok.CRC, tok.MarkerTopic = st.name, st.count, st.bytes, st.crc.Sum32(), st.markerTopic
	}
	return tok, nil
}

// Commit implements pipeline.Committer: it produces a token's records in
// one transaction with the commit marker, unless the marker says that
// transaction already landed.
func (s *KafkaSink) Commit(ctx context.Context, token []byte) error {
	var tok kafkaToken
	if err := json.Unmarshal(token, &tok); err != nil {
		return fmt.Errorf("kafka: commit token: %w", err)
	}
	return s.commit(ctx, tok)
}

// Recover implements pipeline.Committer.
func (s *KafkaSink) Recover(ctx context.Context, token []byte) error {
	var tok *kafkaToken
	if token != nil {
		tok = new(kafkaToken)
		if err := json.Unmarshal(token, tok); err != nil {
			return fmt.Errorf("kafka: checkpointed token: %w", err)
		}
		if tok.Instance == "" {
			return errors.New("kafka: checkpointed token has no instance")
		}
		s.instance = tok.Instance
	} else {
		s.instance = kafkaconn.RandomHex(6)
	}
	s.txnID = s.cfg.TransactionalID
	if s.txnID == "" {
		s.txnID = "weir." + s.slug + "." + s.instance
	}
	s.group = s.cfg.SinkGroup
	if s.group == "" {
		s.group = "weir-sink." + s.slug + "." + s.instance
	}
	timeout := s.cfg.TransactionTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	cl, err := kgo.NewClient(append(s.base, kgo.TransactionalID(s.txnID), kgo.TransactionTimeout(timeout))...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	// Initialising the producer id bumps the epoch of the transactional
	// id: a transaction the previous incarnation left open is aborted and
	// its producer fenced, before the marker is read.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("kafka: init transactional producer %s: %w", s.txnID, err)
	}
	switch {
	case tok != nil && len(tok.Tasks) > 0:
		// Never produced again: the tasks may be another process's now,
		// and their truths are the last landed commit's either way.
		landed, err := s.landed(ctx)
		if err != nil {
			return err
		}
		s.committed = landed
		if landed < tok.Checkpoint {
			s.logger.Warn("kafka: the last checkpoint's transaction did not land; its tasks resume from their truths", "checkpoint", tok.Checkpoint)
		}
	case tok != nil:
		s.verify = true
		if err := s.commit(ctx, *tok); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("kafka: list staging dir: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".stage") {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("kafka: discard staging file: %w", err)
			}
		}
	}
	return nil
}

const kafkaCommitAttempts = 3

func (s *KafkaSink) commit(ctx context.Context, tok kafkaToken) error {
	if tok.Instance != s.instance {
		return fmt.Errorf("kafka: token of instance %s, but this sink is %s", tok.Instance, s.instance)
	}
	if (tok.Count == 0 && len(tok.Tasks) == 0) || tok.Checkpoint <= s.committed {
		s.discard(tok.File)
		return nil
	}
	var last error
	for attempt := 1; ; attempt++ {
		if s.verify {
			landed, err := s.landed(ctx)
			switch {
			case err != nil:
				last = err
			case landed >= tok.Checkpoint:
				s.committed, s.verify = max(s.committed, landed), false
				s.discard(tok.File)
				return nil
			default:
				last = nil
			}
		}
		if last == nil {
			last = s.transact(ctx, tok)
			if last == nil {
				s.committed, s.verify = tok.Checkpoint, false
				s.discard(tok.File)
				return nil
			}
			s.verify = true // the outcome may be unknown: read the marker before trying again
			if errors.Is(last, pipeline.ErrFenced) {
				return fmt.Errorf("kafka: commit checkpoint %d: %w", tok.Checkpoint, last)
			}
		}
		if attempt >= kafkaCommitAttempts || ctx.Err() != nil {
			return fmt.Errorf("kafka: commit checkpoint %d: %w", tok.Checkpoint, last)
		}
		s.logger.Warn("kafka: commit failed; retrying", "checkpoint", tok.Checkpoint, "attempt", attempt, "err", last)
		if err := connect.SleepContext(ctx, time.Duration(attempt)*500*time.Millisecond); err != nil {
			return fmt.Errorf("kafka: commit checkpoint %d: %w", tok.Checkpoint, last)
		}
		last = nil
	}
}

func (s *KafkaSink) discard(file string) {
	if file == "" {
		return
	}
	if err := os.Remove(filepath.Join(s.dir, file)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("kafka: remove committed staging file", "file", file, "err", err)
	}
}

// transact produces the token's staged records and the marker in one
// transaction.
func (s *KafkaSink) transact(ctx context.Context, tok kafkaToken) (err error) {
	var f *os.File
	if tok.File != "" {
		if f, err = os.Open(filepath.Join(s.dir, tok.File)); err != nil {
			return fmt.Errorf("staging file of checkpoint %d, whose transaction did not land: %w", tok.Checkpoint, err)
		}
		defer f.Close()
	}
	if err := s.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			s.abort(ctx)
		}
	}()
	crc := crc32.New(kafkaCRCTable)
	rd := bufio.NewReaderSize(io.TeeReader(io.LimitReader(f, tok.Bytes), crc), 256<<10)
	var (
		mu   sync.Mutex // guards perr: produce callbacks run on franz-go's goroutines
		perr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if perr == nil {
				perr = err
			}
			mu.Unlock()
		}
	}
	limit := int(min(tok.Bytes, 1<<31-1))
	for i := range tok.Count {
		r, err := readKafkaEntry(rd, limit)
		if err != nil {
			return fmt.Errorf("staging file %s, entry %d: %w", tok.File, i, err)
		}
		takePartition(ctx, r)
		s.cl.Produce(ctx, r, promise)
	}
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return fmt.Errorf("read staging file %s: %w", tok.File, err)
	}
	if got := crc.Sum32(); got != tok.CRC {
		return fmt.Errorf("staging file %s is damaged: crc %08x, want %08x", tok.File, got, tok.CRC)
	}
	if err := s.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	mu.Lock()
	err = perr
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if len(tok.Tasks) > 0 {
		if err := s.commitTaskTruths(ctx, tok); err != nil {
			return err
		}
	}
	if err := s.writeMarker(ctx, tok); err != nil {
		return err
	}
	killpoint.Hit(killpoint.KafkaTxnBeforeEnd)
	if err := s.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("end transaction: %w", err)
	}
	return nil
}

func (s *KafkaSink) abort(ctx context.Context) {
	if err := s.cl.AbortBufferedRecords(ctx); err != nil {
		s.logger.Warn("kafka: abort buffered records", "err", err)
	}
	if err := s.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		s.logger.Warn("kafka: abort transaction", "err", err)
	}
}

// writeMarker adds the sink group's offset commit to the open transaction:
// AddOffsetsToTxn, then TxnOffsetCommit of offset = checkpoint on
// partition 0 of the marker topic, metadata {instance, checkpoint}.
func (s *KafkaSink) writeMarker(ctx context.Context, tok kafkaToken) error {
	pid, epoch, err := s.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = s.txnID, pid, epoch, s.group
	if err := kafkaRetryConcurrent(ctx, func() error {
		resp, err := add.RequestWith(ctx, s.cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	}); err != nil {
		return fmt.Errorf("add offsets to transaction: %w", err)
	}
	id, err := s.topicID(ctx, tok.MarkerTopic)
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(kafkaMarker{Instance: s.instance, Checkpoint: tok.Checkpoint})
	metaStr := string(meta)
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = s.txnID, s.group, pid, epoch
	req.Generation, req.MemberID = -1, ""
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = tok.MarkerTopic, id
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = 0, int64(tok.Checkpoint), -1, &metaStr
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return kafkaRetryConcurrent(ctx, func() error {
		resp, err := req.RequestWith(ctx, s.cl)
		if err != nil {
			return fmt.Errorf("commit marker: %w", err)
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return fmt.Errorf("commit marker: %w", err)
				}
			}
		}
		return nil
	})
}

// kafkaRetryConcurrent retries fn while the coordinator answers
// CONCURRENT_TRANSACTIONS (the previous transaction is still completing).
func kafkaRetryConcurrent(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn()
		if !errors.Is(err, kerr.ConcurrentTransactions) || time.Now().After(deadline) {
			return err
		}
		if err := connect.SleepContext(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (s *KafkaSink) topicID(ctx context.Context, topic string) ([16]byte, error) {
	if id, ok := s.topicIDs[topic]; ok {
		return id, nil
	}
	details, err := s.adm.ListTopics(ctx, topic)
	if err != nil {
		return [16]byte{}, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return [16]byte{}, fmt.Errorf("metadata of %s: %v", topic, d.Err)
	}
	if s.topicIDs == nil {
		s.topicIDs = map[string][16]byte{}
	}
	s.topicIDs[topic] = d.ID
	return d.ID, nil
}

// landed returns the highest checkpoint the sink group's marker records
// for this instance (0 when none). It waits out pending transactional
// commits (require_stable).
func (s *KafkaSink) landed(ctx context.Context) (uint64, error) {
	deadline := time.Now().Add(max(s.cfg.TransactionTimeout, 10*time.Second))
	for {
		resps, err := s.adm.FetchOffsets(kadm.RequireStable(ctx), s.group)
		if err == nil {
			err = resps.Error()
		}
		if errors.Is(err, kerr.UnstableOffsetCommit) && time.Now().Before(deadline) {
			if err := connect.SleepContext(ctx, 100*time.Millisecond); err != nil {
				return 0, err
			}
			continue
		}
		if errors.Is(err, kerr.GroupIDNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read commit marker of group %s: %w", s.group, err)
		}
		var at uint64
		resps.Each(func(o kadm.OffsetResponse) {
			var m kafkaMarker
			if json.Unmarshal([]byte(o.Metadata), &m) == nil && m.Instance == s.instance && m.Checkpoint > at {
				at = m.Checkpoint
			}
		})
		return at, nil
	}
}
