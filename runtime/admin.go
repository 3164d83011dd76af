package runtime

// The admin HTTP endpoints on the configuration's `http:` address:
//
//	GET /metrics  Prometheus text format (OpenMetrics when asked for)
//	GET /healthz  200 while the process is up
//	GET /readyz   200 when every pipeline is running and checkpointing
//	              in time; 503 with what is wrong otherwise
//
// Both health endpoints answer JSON.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Admin serves the admin endpoints. Its zero value needs Status set.
type Admin struct {
	// Status lists the pipelines (Supervisor.Status).
	Status func() []PipelineStatus
	// Telemetry serves /metrics; nil: 404.
	Telemetry *Telemetry
	// Version is reported by /healthz.
	Version string
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// Started is when the process started, for /healthz.
	Started time.Time
}

// ReadinessSlack is added to three checkpoint intervals to give the age
// after which a pipeline's last checkpoint is too old for /readyz.
const ReadinessSlack = 10 * time.Second

// MaxCheckpointAge is how old a running pipeline's last checkpoint (or its
// start, before the first) may be before /readyz reports it: three
// intervals plus ReadinessSlack.
func MaxCheckpointAge(interval time.Duration) time.Duration {
	return 3*interval + ReadinessSlack
}

// PipelineHealth is one pipeline in a /readyz answer.
type PipelineHealth struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// LastCheckpointAge is the seconds since the last checkpoint (since
	// the start before the first); absent when not running.
	LastCheckpointAge *float64 `json:"last_checkpoint_age_seconds,omitempty"`
	Checkpoints       int64    `json:"checkpoints"`
	Restarts          int      `json:"restarts,omitempty"`
	// Problem says why the pipeline makes weir unready; empty when fine.
	Problem string `json:"problem,omitempty"`
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready     bool             `json:"ready"`
	Pipelines []PipelineHealth `json:"pipelines"`
}

// Ready evaluates readiness: every pipeline is running (or restarting
// for a reload, or finished its finite input), and no running pipeline's
// last checkpoint is older than MaxCheckpointAge.
func (a *Admin) Ready() Readiness {
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	r := Readiness{Ready: true, Pipelines: []PipelineHealth{}}
	for _, p := range a.Status() {
		h := PipelineHealth{Name: p.Name, State: string(p.State), Restarts: p.Restarts}
		switch p.State {
		case RunStarting:
			h.Problem = "starting: recovering from the last checkpoint"
		case RunStopping:
			h.Problem = "stopping"
		case RunFailed:
			h.Problem = "failed"
			if p.Err != nil {
				h.Problem = "failed: " + RedactSecrets(p.Err.Error())
			}
		case RunRetrying:
			h.Problem = fmt.Sprintf("failed %d time(s) in a row; starting again from its last checkpoint in %s",
				p.Failures, max(0, p.NextRetry.Sub(now)).Round(time.Millisecond))
			if p.Err != nil {
				h.Problem += ": " + RedactSecrets(p.Err.Error())
			}
		case RunRunning:
			if p.Stats == nil {
				break
			}
			at, _, _ := p.Stats.LastCheckpoint()
			if at.IsZero() {
				at = p.Stats.Started()
			}
			age := now.Sub(at)
			secs := age.Seconds()
			h.LastCheckpointAge = &secs
			if max := MaxCheckpointAge(p.CheckpointInterval); age > max {
				h.Problem = fmt.Sprintf("last checkpoint %s ago, more than %s (3 × checkpoint_interval + %s)",
					age.Round(time.Millisecond), max, ReadinessSlack)
			}
		}
		if p.Stats != nil {
			h.Checkpoints = p.Stats.Checkpoints.Load()
		}
		if h.Problem != "" {
			r.Ready = false
		}
		r.Pipelines = append(r.Pipelines, h)
	}
	return r
}

// Handler returns the admin endpoints.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.Telemetry != nil {
		mux.Handle("GET /metrics", a.Telemetry.MetricsHandler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"status": "ok", "version": a.Version, "uptime_seconds": time.Since(a.Started).Seconds(),
		})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := a.Ready()
		code := http.StatusOK
		if !r.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, r)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ListenAdmin listens on the `http:` address. A bare port or ":port"
// listens on 127.0.0.1 only; give a host (0.0.0.0, a LAN address) to
// listen elsewhere.
func ListenAdmin(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// "8686": a bare port.
		host, port = "", addr
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("runtime: admin http: %w", err)
	}
	return ln, nil
}

// Serve serves the admin endpoints on ln until ctx is done, then shuts
// the server down (waiting up to 5 s for requests in flight).
func (a *Admin) Serve(ctx context.Context, ln net.Listener, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("runtime: admin http: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
