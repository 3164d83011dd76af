package sources

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// BenchmarkSyslogTCPExactlyOnce: 4 TCP senders on loopback write RFC
// 5424 lines (newline framing, 110 bytes each) to a syslog → file
// pipeline under exactly_once (every batch fsynced in the ingest WAL);
// the clock stops when the sink has written every line. One op is one
// line; lines/s is the figure to read.
func BenchmarkSyslogTCPExactlyOnce(b *testing.B) {
	dir, addr := b.TempDir(), freeAddr(b)
	cfg, err := pipeline.Default.Load("bench.yaml", fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: bench
    checkpoint_interval: 1s
    sources:
      - syslog: { address: "%s" }
    sinks:
      - file: { path: %s }
`, filepath.Join(dir, "data"), addr, filepath.Join(dir, "out.log")))
	if err != nil {
		b.Fatal(err)
	}
	var stats atomic.Pointer[runtime.Stats]
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{OnStats: func(s *runtime.Stats) { stats.Store(s) }})
	}()
	waitListeningTB(b, addr, done)
	const senders = 4
	line := []byte("<165>1 2026-12-03T10:00:00.000Z web01.example.com nginx 4242 ID47 - GET /api/v1/items 200 1234 0.004\n")
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range senders {
		n := b.N / senders
		if i == 0 {
			n += b.N % senders
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			w := bufio.NewWriterSize(c, 64<<10)
			for range n {
				w.Write(line)
			}
			if err := w.Flush(); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	for stats.Load() == nil || stats.Load().Out() < int64(b.N) {
		select {
		case err := <-done:
			b.Fatalf("pipeline ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	close(stop)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
