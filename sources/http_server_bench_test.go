package sources

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// BenchmarkHTTPServerExactlyOnce: a Go load generator (64 concurrent
// keep-alive clients on loopback) posts requests of 100 ndjson records,
// each with an Idempotency-Key, to an http_server → file pipeline under
// exactly_once; every request is answered only after its records are
// fsynced in the ingest WAL. One op is one request; records/s is the
// figure to read.
func BenchmarkHTTPServerExactlyOnce(b *testing.B) {
	dir, addr := b.TempDir(), freeAddr(b)
	cfg, err := pipeline.Default.Load("bench.yaml", fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: bench
    checkpoint_interval: 1s
    sources:
      - http_server: { address: "%s", path: /in, format: ndjson, max_pending: 1024 }
    sinks:
      - file: { path: %s }
`, filepath.Join(dir, "data"), addr, filepath.Join(dir, "out.jsonl")))
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
	waitListeningTB(b, addr, done)
	var body strings.Builder
	for i := range 100 {
		fmt.Fprintf(&body, `{"ts":"2026-12-03T10:00:00Z","level":"info","service":"api","msg":"request served","n":%d}`+"\n", i)
	}
	payload := body.String()
	const clients = 64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	var next, refused atomic.Int64
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				for {
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/in", strings.NewReader(payload))
					req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", n))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusNoContent {
						break
					}
					if resp.StatusCode != http.StatusTooManyRequests {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					refused.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(refused.Load()), "429s")
	close(stop)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
