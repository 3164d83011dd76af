package sources

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/pipeline"
)

// A kafka source with `repartitioned: true` reads a topic that a
// repartition operator writes (operators/repartition.go). Three kinds of
// record arrive on it:
//
//   - a record with a weir-split header: data, whose Split becomes the
//     sub-split "topic/p|<upstream split>" (the header is dropped), so
//     that event-time operators keep one watermark per upstream split of
//     each partition: records of one upstream split arrive in order in a
//     partition, records of two need not;
//   - a control record (weir-control header): an upstream split
//     announced, its progress (weir-time: the largest event time it has
//     sent, to every partition), or its removal, which becomes the same
//     change of its sub-split; it is not a record of the stream;
//   - a dead letter of the upstream pipeline (weir-dead-letter header),
//     which goes to this pipeline's dead-letter output as it was.

// upstreamRecord handles kr when it is a control record or a dead letter,
// and reports whether it was one. Called with s.mu held.
func (s *kafkaSource) upstreamRecord(kr *kgo.Record, partition string, b *pipeline.Batch) bool {
	var control, split, at []byte
	for _, h := range kr.Headers {
		switch h.Key {
		case pipeline.DeadLetterHeader:
			d, err := pipeline.DeadLetterFromRecord(kr.Value)
			if err != nil {
				r := &pipeline.Record{Value: kr.Value, Key: kr.Key, Time: kr.Timestamp, Split: partition,
					Origin: pipeline.Origin{Name: partition, Offset: kr.Offset}}
				b.Reject(r, s.component, "parse", fmt.Errorf("kafka: an upstream dead letter that does not read back: %w", err))
				return true
			}
			b.Dead = append(b.Dead, d)
			return true
		case pipeline.RepartitionControlHeader:
			control = h.Value
		case pipeline.RepartitionSplitHeader:
			split = h.Value
		case pipeline.RepartitionTimeHeader:
			at = h.Value
		}
	}
	if control == nil {
		return false
	}
	sub := partition + "|" + string(split)
	switch string(control) {
	case pipeline.RepartitionAdded:
		s.splits.Added = append(s.splits.Added, sub)
	case pipeline.RepartitionProgress:
		ns, err := strconv.ParseInt(string(at), 10, 64)
		if err != nil {
			s.logger.Warn("kafka: repartition progress without a time; skipped", "partition", partition, "offset", kr.Offset)
			break
		}
		s.splits.Progress = append(s.splits.Progress, pipeline.SplitProgress{Split: sub, Time: time.Unix(0, ns)})
	case pipeline.RepartitionRemoved:
		s.splits.Removed = append(s.splits.Removed, sub)
	default:
		s.logger.Warn("kafka: unknown repartition control record; skipped", "event", string(control), "partition", partition, "offset", kr.Offset)
	}
	return true
}

// subSplit returns the sub-split "<partition>|<upstream>" of a record of
// this partition, made once per upstream split.
func (st *kafkaPartition) subSplit(partition string, upstream []byte) string {
	if sub, ok := st.subs[string(upstream)]; ok {
		return sub
	}
	if st.subs == nil || len(st.subs) > 1<<12 {
		st.subs = map[string]string{}
	}
	sub := partition + "|" + string(upstream)
	st.subs[string(upstream)] = sub
	return sub
}
