package runtime

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// HistogramBounds are the upper bounds, in seconds, of the buckets of every
// DurationHistogram: 100 µs to about 26 s, doubling, plus an overflow
// bucket. Batch latencies and checkpoint durations both fall in that range.
var HistogramBounds = func() []float64 {
	// Keep in step with histogramBase: bounds[i] = histogramBase × 2^i.
	b := make([]float64, 19)
	v := 0.0001
	for i := range b {
		b[i] = v
		v *= 2
	}
	return b
}()

// histogramBase is the first bucket's upper bound.
const histogramBase = 100 * time.Microsecond

// DurationHistogram counts durations into the fixed HistogramBounds
// buckets with atomic adds: recording is lock-free and costs a few
// nanoseconds, so stages record every batch. The zero value is ready to
// use; it is safe for concurrent use.
type DurationHistogram struct {
	buckets [20]atomic.Uint64 // len(HistogramBounds)+1; the last is +Inf
	sumNS   atomic.Int64
}

// Observe records one duration.
func (h *DurationHistogram) Observe(d time.Duration) {
	// Bucket i holds (bounds[i-1], bounds[i]] with bounds[i] = 100 µs × 2^i:
	// for whole nanoseconds that is the bit length of (d-1) / 100 µs.
	i := 0
	if d > histogramBase {
		i = min(bits.Len64(uint64((d-1)/histogramBase)), len(HistogramBounds))
	}
	h.buckets[i].Add(1)
	h.sumNS.Add(int64(d))
}

// Snapshot returns the per-bucket counts (not cumulative; the last is the
// overflow bucket), the total count and the sum. Buckets are read one by
// one while writers may be adding, so the figures can be off by the
// observations made during the call; count is the sum of the buckets read.
func (h *DurationHistogram) Snapshot() (buckets []uint64, count uint64, sum time.Duration) {
	buckets = make([]uint64, len(h.buckets))
	for i := range h.buckets {
		buckets[i] = h.buckets[i].Load()
		count += buckets[i]
	}
	return buckets, count, time.Duration(h.sumNS.Load())
}
