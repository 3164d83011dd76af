//go:build !unix

package sources

import "time"

// processCPU is unknown here; benchmarks then skip their CPU metric.
func processCPU() time.Duration { return 0 }
