package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// A `repartition: {topic, key}` operator re-keys a stream through a Kafka
// topic, as Kafka Streams does. The loader splits a pipeline at each one
// (splitRepartitions): the operators before it, with the pipeline's
// sources, become a pipeline of their own whose sink is a kafka sink to
// the topic, partitioned by the key; the operators after it read the topic
// back through a kafka source in a consumer group (`repartitioned: true`,
// `partitioned_by:` the key), so that a keyed operator after it has every
// record of a key in one partition, and its state moves with the
// partition across processes. Each hop is exactly once on its own: the
// first pipeline's transactions make its records visible only once its
// checkpoint is durable, the second's offsets commit with its output.
//
// The headers below carry what the second pipeline needs to keep
// watermarks and dead letters as one pipeline would.
const (
	// RepartitionSplitHeader names the upstream split ("<source>:<split>")
	// a record came from: the second pipeline keeps one watermark per
	// (partition, upstream split), as the sub-split "topic/p|<split>".
	RepartitionSplitHeader = "weir-split"
	// RepartitionControlHeader marks a control record: an upstream split
	// announced, caught up or removed, written to every partition.
	RepartitionControlHeader = "weir-control"
	// RepartitionPartitionField is the control record's partition field.
	RepartitionPartitionField = "weir_partition"
	// DeadLetterHeader marks a dead letter of the first pipeline, which
	// the second writes to its own dead-letter output.
	DeadLetterHeader = "weir-dead-letter"

	// RepartitionTimeHeader is a progress control record's event time,
	// in unix nanoseconds.
	RepartitionTimeHeader = "weir-time"

	// The events of control records: an upstream split announced (it
	// holds the watermark after the repartition until its first record or
	// progress), its progress (the largest event time it has sent, written
	// to every partition, so that a partition that gets none of its
	// records still sees it advance), and its removal.
	RepartitionAdded    = "added"
	RepartitionProgress = "progress"
	RepartitionRemoved  = "removed"
)

// Repartition is what a repartition operator's configuration says.
type Repartition struct {
	Topic      string
	Key        string
	Partitions int32
	Group      string // empty: the default
	HasBrokers bool   // false: the connection of the first kafka source
}

// Repartitioner is implemented by the repartition operator's
// configuration. FollowEventTime gives it the event time of the first
// event-time operator after it, when it was not configured with one: the
// progress it reports per upstream split is in that time.
type Repartitioner interface {
	Repartition() Repartition
	FollowEventTime(e *Expr)
}

// EventTimed is implemented by configurations of operators that keep event
// time (windows, dedupe): the expression it comes from, nil for the
// record's time.
type EventTimed interface {
	EventTimeExpr() *Expr
}

// AsWritten returns the pipeline as its file wrote it, before it was split
// at its repartitions (`weir test` runs its operators in one piece, and
// `--pipeline NAME` selects every stage); s itself when it was not split.
// Only the last stage keeps the tests.
func (s *Spec) AsWritten() *Spec {
	if s.written != nil {
		return s.written
	}
	return s
}

// splitRepartitions returns the pipelines s becomes: s itself when it has
// no repartition, else one per stage, upstream first, the last keeping s's
// name, sinks and tests.
func (l *loader) splitRepartitions(s *Spec) []*Spec {
	cut := -1
	for i, c := range s.Operators {
		if _, ok := c.Config.(Repartitioner); ok {
			cut = i
			break
		}
	}
	if cut < 0 {
		return []*Spec{s}
	}
	var out []*Spec
	rest := *s
	rest.written = s
	// inherited is what the connection of the stage's kafka source was
	// decoded from: a repartition without brokers takes it.
	var inherited []ast.Node
	if src := firstKafkaSource(s.Sources); src != nil {
		inherited = []ast.Node{src.node}
	}
	for stage := 0; cut >= 0; stage++ {
		rc := rest.Operators[cut]
		rp := rc.Config.(Repartitioner).Repartition()
		var conn []ast.Node // decoded into the derived kafka configs first
		if !rp.HasBrokers {
			if inherited == nil {
				l.errs = append(l.errs, &ConfigError{Pos: rc.Pos, Msg: fmt.Sprintf(
					"pipeline %q: %s: brokers is required when the pipeline has no kafka source to take them from", s.Name, rc.ID)})
				return nil
			}
			conn = append(conn, inherited...)
		}
		conn = append(conn, rc.node)
		inherited = conn
		group := rp.Group
		if group == "" {
			group = "weir-" + s.Name + "-" + rp.Topic
		}
		up := rest
		up.Tests = nil
		up.Name = fmt.Sprintf("%s.repartition%d", s.Name, stage)
		up.Operators = rest.Operators[: cut+1 : cut+1]
		q := yamlQuote
		sink := l.derived(rc, KindSink, "kafka", rc.ID+"/kafka", conn, fmt.Sprintf(
			"{topic: %s, key: %s, partition: %s, forward_headers: true, create_topic: {partitions: %d}}",
			q(rp.Topic), q(rp.Key), RepartitionPartitionField, rp.Partitions))
		if sink == nil {
			return nil
		}
		up.Sinks = []*Component{sink}
		if rest.DeadLetter != nil {
			dl := l.derived(rc, KindSink, "kafka", rc.ID+"/dead_letter", conn, fmt.Sprintf(
				"{topic: %s, headers: {%s: '\"1\"'}, create_topic: {partitions: %d}}", q(rp.Topic), DeadLetterHeader, rp.Partitions))
			if dl == nil {
				return nil
			}
			up.DeadLetter = dl
		}
		out = append(out, &up)

		source := l.derived(rc, KindSource, "kafka", rc.ID+"/source", conn, fmt.Sprintf(
			"{topics: [%s], topic_regex: false, group: %s, partitioned_by: %s, repartitioned: true, start_at: earliest, isolation_level: read_committed}",
			q(rp.Topic), q(group), q(rp.Key)))
		parse := l.derived(rc, KindOperator, "parse", rc.ID+"/parse", nil, "{format: json}")
		if source == nil || parse == nil {
			return nil
		}
		rest.Sources = []*Component{source}
		rest.Operators = append([]*Component{parse}, rest.Operators[cut+1:]...)
		for _, c := range rest.Operators {
			if et, ok := c.Config.(EventTimed); ok {
				rc.Config.(Repartitioner).FollowEventTime(et.EventTimeExpr())
				break
			}
		}
		cut = -1
		for i, c := range rest.Operators {
			if _, ok := c.Config.(Repartitioner); ok {
				cut = i
				break
			}
		}
	}
	return append(out, &rest)
}

func firstKafkaSource(cs []*Component) *Component {
	for _, c := range cs {
		if c.Name == "kafka" && c.node != nil {
			return c
		}
	}
	return nil
}

// yamlQuote quotes s as a YAML double-quoted scalar.
func yamlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// derived makes a component the loader writes for a repartition rc: from
// the nodes of from (decoded leniently, for their connection settings),
// then the flow mapping text (decoded strictly). Its problems are
// reported at rc.
func (l *loader) derived(rc *Component, kind Kind, name, id string, from []ast.Node, text string) *Component {
	e, ok := l.reg.Lookup(kind, name)
	if !ok {
		l.errorf(rc.node, "%s: needs the %s %s, which this build does not have", rc.ID, name, kind)
		return nil
	}
	c := &Component{Kind: kind, Name: name, ID: id, Pos: rc.Pos, Entry: e, Config: e.NewConfig()}
	fail := func(err error) *Component {
		var ce *ConfigError
		if errors.As(err, &ce) {
			err = errors.New(ce.Msg)
		}
		l.errs = append(l.errs, &ConfigError{Pos: rc.Pos, Msg: fmt.Sprintf("%s: the %s it reads or writes through: %v", rc.ID, name, err)})
		return nil
	}
	for _, n := range from {
		if n == nil {
			continue
		}
		if err := yaml.NewDecoder(bytes.NewReader(nil)).DecodeFromNode(n, c.Config); err != nil {
			return fail(err)
		}
	}
	f, err := parser.ParseBytes([]byte(text), 0)
	if err != nil {
		return fail(err)
	}
	if err := DecodeNode(f.Docs[0].Body, c.Config); err != nil {
		return fail(err)
	}
	if v, ok := c.Config.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fail(err)
		}
	}
	return c
}
