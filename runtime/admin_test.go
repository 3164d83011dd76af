package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weirhq/weir/runtime"
)

// adminRig runs a configuration under a Supervisor with telemetry, and
// serves the admin endpoints on a real loopback listener.
type adminRig struct {
	base   string
	sup    *runtime.Supervisor
	stop   chan struct{}
	done   chan error
	cancel context.CancelFunc
}

func startAdmin(t *testing.T, yaml string) *adminRig {
	t.Helper()
	rev, err := runtime.NewRevision(registry(), "test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tel, err := runtime.NewTelemetry(ctx, runtime.TelemetryOptions{Version: "test", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := runtime.NewSupervisor(rev, nil, tel.RunOptions(runtime.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := runtime.ListenAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := &runtime.Admin{Status: sup.Status, Telemetry: tel, Version: "test", Started: time.Now()}
	go admin.Serve(ctx, ln, nil)
	r := &adminRig{base: "http://" + ln.Addr().String(), sup: sup, stop: make(chan struct{}), done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- sup.Run(ctx, r.stop) }()
	t.Cleanup(func() {
		select {
		case <-r.stop:
		default:
			close(r.stop)
		}
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("pipelines did not stop")
		}
		cancel()
		_ = tel.Shutdown(context.Background())
	})
	return r
}

func (r *adminRig) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func scrape(t *testing.T, r *adminRig) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := r.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the series of fam whose labels include all of
// want, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	fam := fams[name]
	if fam == nil {
		return 0, false
	}
series:
	for _, m := range fam.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An endless pipeline: /metrics counts its records per component, and the
// health endpoints answer JSON.
func TestAdminMetricsAndHealthOverHTTP(t *testing.T) {
	dir := t.TempDir()
	r := startAdmin(t, config(dir, "{n: 100000000, positioned: true}", "exactly_once"))

	code, body := r.get(t, "/healthz")
	if code != 200 || !strings.Contains(body, `"status": "ok"`) {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	waitFor(t, "a checkpoint", func() bool {
		st := r.sup.Status()
		return len(st) == 1 && st[0].Stats != nil && st[0].Stats.Checkpoints.Load() > 0
	})
	code, body = r.get(t, "/readyz")
	var ready runtime.Readiness
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("/readyz body: %v: %s", err, body)
	}
	if code != 200 || !ready.Ready || len(ready.Pipelines) != 1 || ready.Pipelines[0].State != "running" {
		t.Fatalf("/readyz = %d %s", code, body)
	}

	fams := scrape(t, r)
	src := map[string]string{"weir_pipeline": "t", "weir_component": "sources[0]/count", "weir_component_kind": "source"}
	in, ok := value(fams, "weir_records_in_total", src)
	if !ok || in <= 0 {
		t.Fatalf("weir_records_in_total{source} = %v, %v; families: %v", in, ok, names(fams))
	}
	filterIn, _ := value(fams, "weir_records_in_total", map[string]string{"weir_component": "operators[1]/filter"})
	filterOut, _ := value(fams, "weir_records_out_total", map[string]string{"weir_component": "operators[1]/filter"})
	if filterIn == 0 || filterOut == 0 || filterOut > filterIn {
		t.Fatalf("filter in %v out %v: want 0 < out <= in", filterIn, filterOut)
	}
	sinkOut, _ := value(fams, "weir_records_out_total", map[string]string{"weir_component": "sinks[0]/file"})
	if sinkOut <= 0 {
		t.Fatalf("sink records out = %v", sinkOut)
	}
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"weir_checkpoints_total", map[string]string{"weir_pipeline": "t"}},
		{"weir_checkpoint_failures_total", map[string]string{"weir_pipeline": "t"}},
		{"weir_checkpoint_age_seconds", map[string]string{"weir_pipeline": "t"}},
		{"weir_checkpoint_size_bytes", map[string]string{"weir_pipeline": "t"}},
		{"weir_checkpoint_duration_seconds", map[string]string{"weir_pipeline": "t"}},
		{"weir_records_dead_lettered_total", map[string]string{"weir_pipeline": "t"}},
		{"weir_pipeline_up", map[string]string{"weir_pipeline": "t"}},
		{"weir_queue_capacity", map[string]string{"weir_component": "operators"}},
		{"weir_queue_length", map[string]string{"weir_component": "sinks[0]/file"}},
		{"weir_batch_duration_seconds", map[string]string{"weir_component": "operators"}},
		{"weir_batch_duration_seconds", map[string]string{"weir_component": "sinks[0]/file"}},
	} {
		if _, ok := value(fams, want.name, want.labels); !ok {
			t.Errorf("no %s%v in /metrics; have %v", want.name, want.labels, names(fams))
		}
	}
	if v, _ := value(fams, "weir_pipeline_up", nil); v != 1 {
		t.Errorf("weir_pipeline_up = %v, want 1", v)
	}
	if n, _ := value(fams, "weir_batch_duration_seconds", map[string]string{"weir_component": "sinks[0]/file"}); n <= 0 {
		t.Errorf("sink batch duration histogram has %v samples", n)
	}
	// Counters only grow between scrapes.
	fams2 := scrape(t, r)
	in2, _ := value(fams2, "weir_records_in_total", src)
	if in2 < in {
		t.Fatalf("records in went down: %v then %v", in, in2)
	}
}

func names(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	return out
}

// /readyz says what is wrong: a failed pipeline makes weir unready, with
// the error in the body.
func TestReadyzReportsFailedPipeline(t *testing.T) {
	now := time.Now()
	st := []runtime.PipelineStatus{
		{Name: "ok", State: runtime.RunRunning, CheckpointInterval: time.Second},
		{Name: "broken", State: runtime.RunFailed, Err: fmt.Errorf("dial amqp://weir:hunter2@127.0.0.1:5672/: connection refused")},
	}
	a := &runtime.Admin{Status: func() []runtime.PipelineStatus { return st }, Now: func() time.Time { return now }}
	r := a.Ready()
	if r.Ready {
		t.Fatal("ready with a failed pipeline")
	}
	if p := r.Pipelines[1].Problem; !strings.Contains(p, "connection refused") || strings.Contains(p, "hunter2") {
		t.Fatalf("problem = %q: want the error, without the password", p)
	}
}

func TestMaxCheckpointAge(t *testing.T) {
	if got, want := runtime.MaxCheckpointAge(time.Second), 13*time.Second; got != want {
		t.Fatalf("MaxCheckpointAge(1s) = %v, want %v", got, want)
	}
}

func TestListenAdminDefaultsToLoopback(t *testing.T) {
	ln, err := runtime.ListenAdmin(":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if host := ln.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("listening on %s, want 127.0.0.1", host)
	}
}
