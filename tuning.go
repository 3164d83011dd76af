package main

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// defaultGCPercent is weir's garbage-collector target when GOGC is not set.
// A pipeline's live heap is small (batches in flight, window state: ~10 MB
// on the reference benchmark) and almost everything it allocates dies
// within a batch, so collecting at 3× the live heap instead of 2× saves GC
// CPU while peak RSS stays well under 100 MB. Measured on p1-filter, 1M
// lines, at_least_once, 3 runs each (user CPU s / peak RSS):
// GOGC=100: 2.2 s / 36 MB; 200: 1.29 s / 71 MB; 400: 1.19 s / 100 MB.
// GOGC and GOMEMLIMIT in the environment still win.
const defaultGCPercent = 200

// When GOMEMLIMIT is not set, weir keeps a soft memory limit of
// memoryLimitFor(live heap), re-read every memoryLimitEvery: at least
// minMemoryLimit, so that a small pipeline's heap does not grow to 3× its
// live size (p1-filter, 1M lines, exactly_once, 3 runs: peak RSS 93-106 MB
// without a limit, 86-90 MB with 64 MiB, user CPU unchanged at 0.64-0.74 s;
// 48 MiB: 75 MB but 20% more CPU), and never below twice the live heap, so
// that a pipeline with large window state collects no more often than
// GOGC=100 would (a fixed limit under its live heap would make the
// collector run all the time).
const (
	minMemoryLimit   = 64 << 20
	memoryLimitEvery = time.Second
)

// memoryLimitFor is the soft memory limit for a live heap of live bytes.
func memoryLimitFor(live uint64) int64 {
	if live > math.MaxInt64/4 {
		return math.MaxInt64
	}
	return max(minMemoryLimit, 2*int64(live))
}

func init() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(minMemoryLimit)
		go followLiveHeap()
	}
}

// followLiveHeap raises (or lowers) the soft memory limit with the live
// heap; see memoryLimitFor.
func followLiveHeap() {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for range time.Tick(memoryLimitEvery) {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			debug.SetMemoryLimit(memoryLimitFor(sample[0].Value.Uint64()))
		}
	}
}
