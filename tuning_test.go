package main

import (
	"math"
	"testing"
)

// The soft memory limit is 64 MiB for small heaps and twice the live heap
// for large ones, so it never sits under the live heap.
func TestMemoryLimitFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int64
	}{{0, 64 << 20}, {10 << 20, 64 << 20}, {32 << 20, 64 << 20}, {100 << 20, 200 << 20}, {8 << 30, 16 << 30}, {math.MaxUint64, math.MaxInt64}} {
		if got := memoryLimitFor(tc.live); got != tc.want {
			t.Errorf("memoryLimitFor(%d) = %d, want %d", tc.live, got, tc.want)
		}
		if got := memoryLimitFor(tc.live); got != math.MaxInt64 && uint64(got) < tc.live { // MaxInt64: no limit
			t.Errorf("memoryLimitFor(%d) = %d is under the live heap", tc.live, got)
		}
	}
}
