package runtime

// Metrics: weir's OpenTelemetry instruments. Every figure is read from a
// running pipeline's Stats (atomic counters the stages update per batch)
// when a reader collects — a Prometheus scrape or an OTLP push — so the
// per-record path pays nothing for metrics. Counters and gauges are
// asynchronous (observable) instruments; the two histograms, which OTel
// has no asynchronous form of, are handed to the readers by a
// metric.Producer that reads the stages' lock-free DurationHistograms.
//
// Instruments (OTel names; the Prometheus exporter writes dots as
// underscores, appends _total to counters and the unit to seconds and
// bytes; labels are weir_pipeline, weir_component, weir_component_kind,
// and on the per-split gauges weir_split and weir_source):
//
//	name                            kind        unit           attributes                                      what
//	weir.records.in                 counter     {record}       pipeline, component, kind                       records into a component (sources: read; operators: given to Process; sinks: written)
//	weir.records.out                counter     {record}       pipeline, component, kind                       records out of a component (sources: handed on; operators: emitted; sinks: written)
//	weir.records.dead_lettered      counter     {record}       pipeline                                        records sent to the dead-letter output
//	weir.records.late               counter     {record}       pipeline, component (operator)                  records past allowed_lateness (operators with Late() int64)
//	weir.records.duplicates         counter     {record}       pipeline, component (source)                    redeliveries dropped by message id (WAL-fed sources)
//	weir.source.lag                 gauge       {record}       pipeline, component (source)                    backlog, for sources implementing pipeline.Lagger
//	weir.source.split.lag           gauge       {record}       pipeline, component (source), split             backlog per split (Kafka: messages left on a partition), for sources implementing pipeline.SplitLagger
//	weir.operator.split.watermark   gauge       s              pipeline, component (operator), source, split   a split's own watermark as a Unix time, for operators implementing pipeline.SplitWatermarker (window, dedupe)
//	weir.queue.length               gauge       {batch}        pipeline, component                             messages waiting in a stage's input channel (operators, each sink)
//	weir.queue.capacity             gauge       {batch}        pipeline, component                             that channel's capacity: length == capacity is backpressure
//	weir.batch.duration             histogram   s              pipeline, component                             operator chain Process time per batch (component "operators"); sink Write time per batch
//	weir.checkpoints                counter     {checkpoint}   pipeline                                        completed checkpoints
//	weir.checkpoint.failures        counter     {checkpoint}   pipeline                                        failed checkpoints
//	weir.checkpoint.duration        histogram   s              pipeline                                        barrier injection to commit
//	weir.checkpoint.size            gauge       By             pipeline                                        size of the last checkpoint
//	weir.checkpoint.age             gauge       s              pipeline                                        time since the last checkpoint (since the start before the first)
//	weir.wal.size                   gauge       By             pipeline, component (source)                    ingest WAL bytes of a WAL-fed source
//	weir.pipeline.up                gauge                      pipeline                                        1 while running, 0 once finished or failed
//
// Histogram buckets: HistogramBounds (100 µs doubling to 26 s).
//
// The per-split gauges have one series per split a component has now
// (weir.split: "topic/partition" for Kafka, a file's identity), so a
// revoked partition's series disappears. On the watermark gauge,
// weir.source is the id of the source component the split belongs to.
// The watermark is a timestamp rather than an age, as Prometheus's
// instrumentation guidelines advise for times (the Unix time of the event,
// not the time since it) and as Flink reports currentInputWatermark: it
// stays right between scrapes and when the pipeline stalls, and
// `time() - weir_operator_split_watermark_seconds` is the event-time lag;
// a split that is behind shows as the lowest series of its operator.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/weirhq/weir/pipeline"
)

// MeterName is the instrumentation scope of weir's metrics.
const MeterName = "github.com/weirhq/weir/runtime"

// Attribute keys on weir's metrics (Prometheus labels weir_pipeline,
// weir_component, weir_component_kind).
const (
	AttrPipeline      = attribute.Key("weir.pipeline")
	AttrComponent     = attribute.Key("weir.component")
	AttrComponentKind = attribute.Key("weir.component.kind")
	// AttrSplit is the split of a per-split gauge (Record.Split).
	AttrSplit = attribute.Key("weir.split")
	// AttrSource is, on weir.operator.split.watermark, the id of the
	// source component the split belongs to.
	AttrSource = attribute.Key("weir.source")
)

// PipelineState is where a pipeline is in its life.
type PipelineState int32

// The pipeline states. A pipeline that stopped gracefully or reached the
// end of finite input is Finished; one that returned an error is Failed.
const (
	StateStarting PipelineState = iota
	StateRunning
	StateFinished
	StateFailed
)

func (s PipelineState) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateFinished:
		return "finished"
	case StateFailed:
		return "failed"
	}
	return "unknown"
}

// State returns the pipeline's state. Once it is not StateStarting, the
// component lists (Sources, Operators, Sinks) are complete and may be read
// from any goroutine; before, they are being built and must not be read.
func (s *Stats) State() PipelineState { return PipelineState(s.state.Load()) }

// Started returns when the pipeline started running (zero before).
func (s *Stats) Started() time.Time {
	if s.State() == StateStarting {
		return time.Time{}
	}
	return s.started
}

// built reports whether the component lists are complete and safe to read
// from another goroutine (they are appended to while building).
func (s *Stats) built() bool { return s.State() != StateStarting }

// queueGauge is one stage's input channel, whose fill level shows
// backpressure: a full queue in front of a sink means the sink is the
// bottleneck.
type queueGauge struct {
	component string // "operators" or the sink's id
	ch        chan message
}

// markRunning publishes the components and queues set while building: a
// reader that sees State() != StateStarting may read Sources, Operators,
// Sinks and queues without further synchronisation.
func (s *Stats) markRunning(merged chan message, sinks []*sinkStage) {
	s.queues = append(s.queues, queueGauge{component: "operators", ch: merged})
	for _, sk := range sinks {
		s.queues = append(s.queues, queueGauge{component: sk.stats.ID, ch: sk.in})
	}
	s.started = time.Now()
	s.state.Store(int32(StateRunning))
}

// markDone records how the pipeline ended.
func (s *Stats) markDone(err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.state.Store(int32(StateFailed))
		return
	}
	s.state.Store(int32(StateFinished))
}

// lagOf returns the source's Lag method, if it has one.
func lagOf(src pipeline.Source) func() int64 {
	if l, ok := src.(pipeline.Lagger); ok {
		return l.Lag
	}
	return nil
}

// observeOperator adds an operator's ComponentStats to s.
func observeOperator(s *Stats, id string, op pipeline.Operator) *ComponentStats {
	cs := &ComponentStats{ID: id}
	if l, ok := op.(pipeline.LateCounter); ok {
		cs.late = l.Late
	}
	if w, ok := op.(pipeline.SplitWatermarker); ok {
		cs.splitWatermarks = w.SplitWatermarks
	}
	s.Operators = append(s.Operators, cs)
	return cs
}

// Metrics exports the figures of every tracked pipeline as OpenTelemetry
// metrics. Create it with NewMetrics, pass its Track method as
// Options.OnStats (or call Track from your own OnStats), and hand its
// Producer to the metric readers (NewTelemetry does all of this). It is
// safe for concurrent use.
type Metrics struct {
	start time.Time

	mu        sync.Mutex        // guards the fields below
	pipelines map[string]*Stats // the current run of each pipeline, by name
	// retired holds the final figures of runs a pipeline was restarted
	// from (a reload), so that counters and histograms stay monotonic.
	retired map[seriesKey]*retiredSeries
}

type seriesKey struct {
	metric, pipeline, component string
}

type retiredSeries struct {
	n       int64
	buckets []uint64
	sum     time.Duration
}

// NewMetrics registers weir's asynchronous instruments with a meter from
// mp. A nil mp means no instruments (Track and Producer still work).
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{start: time.Now(), pipelines: map[string]*Stats{}, retired: map[seriesKey]*retiredSeries{}}
	if mp == nil {
		return m, nil
	}
	if err := m.register(mp.Meter(MeterName)); err != nil {
		return nil, err
	}
	return m, nil
}

// Track starts exporting s. A second Stats for the same pipeline name (the
// pipeline was restarted) replaces the first, whose counts are carried
// over so counters never go down.
func (m *Metrics) Track(s *Stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.pipelines[s.Pipeline]; old != nil && old != s {
		m.retire(old)
	}
	m.pipelines[s.Pipeline] = s
}

// Untrack stops exporting the pipeline (it was removed by a reload). Its
// series disappear from later collections.
func (m *Metrics) Untrack(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pipelines, name)
	for k := range m.retired {
		if k.pipeline == name {
			delete(m.retired, k)
		}
	}
}

// retire folds the counters of a finished run into m.retired. Caller
// holds m.mu.
func (m *Metrics) retire(s *Stats) {
	forEachCounter(s, func(metric, component string, _ attribute.Set, v int64) {
		m.series(seriesKey{metric, s.Pipeline, component}).n += v
	})
	forEachHistogram(s, func(metric, component string, _ attribute.Set, h *DurationHistogram) {
		b, _, sum := h.Snapshot()
		r := m.series(seriesKey{metric, s.Pipeline, component})
		if r.buckets == nil {
			r.buckets = make([]uint64, len(b))
		}
		for i := range b {
			r.buckets[i] += b[i]
		}
		r.sum += sum
	})
}

func (m *Metrics) series(k seriesKey) *retiredSeries {
	r := m.retired[k]
	if r == nil {
		r = &retiredSeries{}
		m.retired[k] = r
	}
	return r
}

// snapshot returns the tracked pipelines that are safe to read.
func (m *Metrics) snapshot() []*Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Stats, 0, len(m.pipelines))
	for _, s := range m.pipelines {
		if s.built() {
			out = append(out, s)
		}
	}
	return out
}

func (m *Metrics) carried(metric, pipeline, component string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.retired[seriesKey{metric, pipeline, component}]; r != nil {
		return r.n
	}
	return 0
}

// Metric names; see doc.go for the table.
const (
	metricRecordsIn        = "weir.records.in"
	metricRecordsOut       = "weir.records.out"
	metricDeadLettered     = "weir.records.dead_lettered"
	metricLate             = "weir.records.late"
	metricDuplicates       = "weir.records.duplicates"
	metricSourceLag        = "weir.source.lag"
	metricSourceSplitLag   = "weir.source.split.lag"
	metricSplitWatermark   = "weir.operator.split.watermark"
	metricQueueLength      = "weir.queue.length"
	metricQueueCapacity    = "weir.queue.capacity"
	metricCheckpoints      = "weir.checkpoints"
	metricCheckpointFails  = "weir.checkpoint.failures"
	metricCheckpointSize   = "weir.checkpoint.size"
	metricCheckpointAge    = "weir.checkpoint.age"
	metricCheckpointDur    = "weir.checkpoint.duration"
	metricWALSize          = "weir.wal.size"
	metricPipelineUp       = "weir.pipeline.up"
	metricBatchDuration    = "weir.batch.duration"
	componentKindSource    = "source"
	componentKindOperator  = "operator"
	componentKindSink      = "sink"
	componentKindOperators = "operators" // the operator chain as a whole
)

func componentAttrs(pipe, component, kind string) attribute.Set {
	return attribute.NewSet(AttrPipeline.String(pipe), AttrComponent.String(component), AttrComponentKind.String(kind))
}

// observeSplits reports the per-split gauges of s: every source's split
// lags and every operator's split watermarks.
func observeSplits(o metric.Observer, s *Stats, lag metric.Int64ObservableGauge, wm metric.Float64ObservableGauge) {
	for _, c := range s.Sources {
		if c.splitLags == nil {
			continue
		}
		for split, n := range c.splitLags() {
			o.ObserveInt64(lag, n, metric.WithAttributes(AttrPipeline.String(s.Pipeline), AttrComponent.String(c.ID),
				AttrComponentKind.String(componentKindSource), AttrSplit.String(split)))
		}
	}
	for _, c := range s.Operators {
		if c.splitWatermarks == nil {
			continue
		}
		for id, t := range c.splitWatermarks() {
			source := strconv.Itoa(id.Source)
			if id.Source >= 0 && id.Source < len(s.Sources) {
				source = s.Sources[id.Source].ID
			}
			o.ObserveFloat64(wm, float64(t.UnixNano())/1e9, metric.WithAttributes(AttrPipeline.String(s.Pipeline), AttrComponent.String(c.ID),
				AttrComponentKind.String(componentKindOperator), AttrSource.String(source), AttrSplit.String(id.Split)))
		}
	}
}

// forEachCounter calls f with every counter of s.
func forEachCounter(s *Stats, f func(metric, component string, attrs attribute.Set, v int64)) {
	for _, c := range s.Sources {
		a := componentAttrs(s.Pipeline, c.ID, componentKindSource)
		n := c.Records.Load()
		f(metricRecordsIn, c.ID, a, n)
		f(metricRecordsOut, c.ID, a, n)
		if c.walSize != nil {
			f(metricDuplicates, c.ID, a, c.Duplicates.Load())
		}
	}
	for _, c := range s.Operators {
		a := componentAttrs(s.Pipeline, c.ID, componentKindOperator)
		f(metricRecordsIn, c.ID, a, c.In.Load())
		f(metricRecordsOut, c.ID, a, c.Records.Load())
		if c.late != nil {
			f(metricLate, c.ID, a, c.late())
		}
	}
	for _, c := range s.Sinks {
		a := componentAttrs(s.Pipeline, c.ID, componentKindSink)
		n := c.Records.Load()
		f(metricRecordsIn, c.ID, a, n)
		f(metricRecordsOut, c.ID, a, n)
	}
	p := attribute.NewSet(AttrPipeline.String(s.Pipeline))
	f(metricDeadLettered, "", p, s.DeadLetter.Records.Load())
	f(metricCheckpoints, "", p, s.Checkpoints.Load())
	f(metricCheckpointFails, "", p, s.CheckpointFailures.Load())
}

// forEachHistogram calls f with every histogram of s.
func forEachHistogram(s *Stats, f func(metric, component string, attrs attribute.Set, h *DurationHistogram)) {
	if len(s.Operators) > 0 {
		f(metricBatchDuration, componentKindOperators, componentAttrs(s.Pipeline, componentKindOperators, componentKindOperators), &s.Chain.Latency)
	}
	for _, c := range s.Sinks {
		f(metricBatchDuration, c.ID, componentAttrs(s.Pipeline, c.ID, componentKindSink), &c.Latency)
	}
	f(metricCheckpointDur, "", attribute.NewSet(AttrPipeline.String(s.Pipeline)), &s.CheckpointDuration)
}

func (m *Metrics) register(meter metric.Meter) error {
	counters := map[string]metric.Int64ObservableCounter{}
	var errs []error
	counter := func(name, unit, desc string) {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		counters[name] = c
	}
	counter(metricRecordsIn, "{record}", "Records received by a component: read by a source, given to an operator, written by a sink.")
	counter(metricRecordsOut, "{record}", "Records emitted by a component: handed on by a source or an operator, written by a sink.")
	counter(metricDeadLettered, "{record}", "Records sent to the pipeline's dead-letter output (or counted and logged when it has none).")
	counter(metricLate, "{record}", "Records later than an operator's allowed lateness (dead-lettered with reason late).")
	counter(metricDuplicates, "{record}", "Redelivered messages dropped by message id by a WAL-fed source.")
	counter(metricCheckpoints, "{checkpoint}", "Completed checkpoints.")
	counter(metricCheckpointFails, "{checkpoint}", "Checkpoints that failed (the pipeline stopped; the last good checkpoint is kept).")

	lag, err1 := meter.Int64ObservableGauge(metricSourceLag, metric.WithUnit("{record}"),
		metric.WithDescription("How far a source is behind its input, in the source's unit (Kafka: messages; file: bytes), for sources that know."))
	qlen, err2 := meter.Int64ObservableGauge(metricQueueLength, metric.WithUnit("{batch}"),
		metric.WithDescription("Messages waiting in a stage's input channel; at weir.queue.capacity the stage is the bottleneck (backpressure)."))
	qcap, err3 := meter.Int64ObservableGauge(metricQueueCapacity, metric.WithUnit("{batch}"),
		metric.WithDescription("Capacity of a stage's input channel."))
	size, err4 := meter.Int64ObservableGauge(metricCheckpointSize, metric.WithUnit("By"),
		metric.WithDescription("Size of the last checkpoint written."))
	age, err5 := meter.Float64ObservableGauge(metricCheckpointAge, metric.WithUnit("s"),
		metric.WithDescription("Time since the last checkpoint completed (since the pipeline started, before the first)."))
	walSize, err6 := meter.Int64ObservableGauge(metricWALSize, metric.WithUnit("By"),
		metric.WithDescription("Bytes in a WAL-fed source's ingest write-ahead log."))
	up, err7 := meter.Int64ObservableGauge(metricPipelineUp,
		metric.WithDescription("1 while a pipeline is running, 0 once it finished or failed."))
	splitLag, err8 := meter.Int64ObservableGauge(metricSourceSplitLag, metric.WithUnit("{record}"),
		metric.WithDescription("How far a source is behind on one of its splits (Kafka: messages left to read on a partition), for sources that know."))
	splitWM, err9 := meter.Float64ObservableGauge(metricSplitWatermark, metric.WithUnit("s"),
		metric.WithDescription("An event-time operator's watermark for one split (its largest event time minus the allowed out-of-orderness), as a Unix time; the operator's watermark is the lowest of the splits not idle or caught up."))
	errs = append(errs, err1, err2, err3, err4, err5, err6, err7, err8, err9)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	insts := []metric.Observable{lag, qlen, qcap, size, age, walSize, up, splitLag, splitWM}
	for _, c := range counters {
		insts = append(insts, c)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := time.Now()
		for _, s := range m.snapshot() {
			forEachCounter(s, func(name, component string, attrs attribute.Set, v int64) {
				o.ObserveInt64(counters[name], v+m.carried(name, s.Pipeline, component), metric.WithAttributeSet(attrs))
			})
			p := metric.WithAttributeSet(attribute.NewSet(AttrPipeline.String(s.Pipeline)))
			for _, c := range s.Sources {
				a := metric.WithAttributeSet(componentAttrs(s.Pipeline, c.ID, componentKindSource))
				if c.lag != nil {
					o.ObserveInt64(lag, c.lag(), a)
				}
				if c.walSize != nil {
					o.ObserveInt64(walSize, c.walSize(), a)
				}
			}
			observeSplits(o, s, splitLag, splitWM)
			for _, q := range s.queues {
				kind := componentKindSink
				if q.component == componentKindOperators {
					kind = componentKindOperators
				}
				a := metric.WithAttributeSet(componentAttrs(s.Pipeline, q.component, kind))
				o.ObserveInt64(qlen, int64(len(q.ch)), a)
				o.ObserveInt64(qcap, int64(cap(q.ch)), a)
			}
			at, _, sz := s.LastCheckpoint()
			if at.IsZero() {
				at = s.Started()
			}
			o.ObserveInt64(size, int64(sz), p)
			o.ObserveFloat64(age, now.Sub(at).Seconds(), p)
			running := int64(0)
			if s.State() == StateRunning {
				running = 1
			}
			o.ObserveInt64(up, running, p)
		}
		return nil
	}, insts...)
	return err
}

// Producer returns the metric.Producer (go.opentelemetry.io/otel/sdk/metric)
// that supplies weir's histograms, weir.batch.duration and
// weir.checkpoint.duration, to a reader or the Prometheus exporter.
func (m *Metrics) Producer() *HistogramProducer { return &HistogramProducer{m: m} }

// HistogramProducer implements go.opentelemetry.io/otel/sdk/metric.Producer.
type HistogramProducer struct{ m *Metrics }

// Produce returns the current histograms, cumulative since the process
// started. It is safe for concurrent use.
func (p *HistogramProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	m := p.m
	now := time.Now()
	byName := map[string]*metricdata.Histogram[float64]{
		metricBatchDuration: {Temporality: metricdata.CumulativeTemporality},
		metricCheckpointDur: {Temporality: metricdata.CumulativeTemporality},
	}
	for _, s := range m.snapshot() {
		forEachHistogram(s, func(name, component string, attrs attribute.Set, h *DurationHistogram) {
			b, count, sum := h.Snapshot()
			m.mu.Lock()
			if r := m.retired[seriesKey{name, s.Pipeline, component}]; r != nil && r.buckets != nil {
				for i := range b {
					b[i] += r.buckets[i]
					count += r.buckets[i]
				}
				sum += r.sum
			}
			m.mu.Unlock()
			hist := byName[name]
			hist.DataPoints = append(hist.DataPoints, metricdata.HistogramDataPoint[float64]{
				Attributes: attrs, StartTime: m.start, Time: now,
				Count: count, Bounds: HistogramBounds, BucketCounts: b, Sum: sum.Seconds(),
			})
		})
	}
	sm := metricdata.ScopeMetrics{Scope: instrumentation.Scope{Name: MeterName}}
	for _, d := range []struct{ name, desc string }{
		{metricBatchDuration, "Time to process one batch: the operator chain's Process calls (weir.component=operators), or one sink Write."},
		{metricCheckpointDur, "Time from injecting a checkpoint's barriers to its commit."},
	} {
		if h := byName[d.name]; len(h.DataPoints) > 0 {
			sm.Metrics = append(sm.Metrics, metricdata.Metrics{Name: d.name, Description: d.desc, Unit: "s", Data: *h})
		}
	}
	if len(sm.Metrics) == 0 {
		return nil, nil
	}
	return []metricdata.ScopeMetrics{sm}, nil
}
