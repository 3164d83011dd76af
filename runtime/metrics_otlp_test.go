package runtime_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/runtime"
)

// otlpReceiver is a minimal OTLP/HTTP collector: it decodes what the
// exporters push to /v1/metrics and /v1/traces.
type otlpReceiver struct {
	mu      sync.Mutex
	metrics []*colmetrics.ExportMetricsServiceRequest
	traces  []*coltrace.ExportTraceServiceRequest
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch r.URL.Path {
	case "/v1/metrics":
		var req colmetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.metrics = append(o.metrics, &req)
		out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	case "/v1/traces":
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.traces = append(o.traces, &req)
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	default:
		http.NotFound(w, r)
	}
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, metrics and one span per
// checkpoint (with its phases as children) are pushed over OTLP/HTTP.
func TestOTLPExportOfMetricsAndCheckpointTraces(t *testing.T) {
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)

	ctx := context.Background()
	tel, err := runtime.NewTelemetry(ctx, runtime.TelemetryOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.OTLPMetrics || !tel.OTLPTraces {
		t.Fatalf("OTLP metrics %v traces %v, want both on", tel.OTLPMetrics, tel.OTLPTraces)
	}
	dir := t.TempDir()
	cfg := load(t, config(dir, "{n: 3000, positioned: true}", "exactly_once"))
	if err := runtime.Run(ctx, cfg, nil, nil, tel.RunOptions(runtime.Options{})); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(ctx); err != nil { // pushes the last figures
		t.Fatal(err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	units := map[string]string{}
	var sourceIn int64
	for _, req := range recv.metrics {
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					units[m.Name] = m.Unit
					if m.Name != "weir.records.in" {
						continue
					}
					for _, dp := range m.GetSum().GetDataPoints() {
						for _, a := range dp.Attributes {
							if a.Key == "weir.component" && a.Value.GetStringValue() == "sources[0]/count" {
								sourceIn = dp.GetAsInt()
							}
						}
					}
				}
			}
		}
	}
	for name, unit := range map[string]string{"weir.records.in": "{record}", "weir.records.out": "{record}",
		"weir.checkpoint.duration": "s", "weir.batch.duration": "s", "weir.checkpoint.size": "By"} {
		if got, ok := units[name]; !ok || got != unit {
			t.Errorf("OTLP metric %s: unit %q (present %v), want %q", name, got, ok, unit)
		}
	}
	if sourceIn != 3000 {
		t.Errorf("weir.records.in{sources[0]/count} = %d, want 3000", sourceIn)
	}

	type span struct{ name, trace, id, parent string }
	var spans []span
	for _, req := range recv.traces {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans = append(spans, span{s.Name, string(s.TraceId), string(s.SpanId), string(s.ParentSpanId)})
				}
			}
		}
	}
	roots := map[string]span{}
	for _, s := range spans {
		if s.name == "checkpoint" {
			roots[s.id] = s
		}
	}
	if len(roots) == 0 {
		t.Fatalf("no checkpoint span among %d spans", len(spans))
	}
	children := map[string]map[string]bool{}
	for _, s := range spans {
		if p, ok := roots[s.parent]; ok && p.trace == s.trace {
			if children[s.parent] == nil {
				children[s.parent] = map[string]bool{}
			}
			children[s.parent][s.name] = true
		}
	}
	complete := 0
	for id := range roots {
		c := children[id]
		if c["barrier alignment"] && c["snapshot"] && c["pre-commit"] && c["save"] && c["commit"] {
			complete++
		}
	}
	if complete == 0 {
		t.Fatalf("no checkpoint span has all five phases as children: %v", children)
	}
}
