package runtime

// Telemetry: the OpenTelemetry SDK set up for `weir run` — a Prometheus
// exporter behind GET /metrics, and OTLP/HTTP push of metrics and
// checkpoint traces when the standard OTEL_EXPORTER_OTLP_* environment
// variables ask for it.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TelemetryOptions configure NewTelemetry.
type TelemetryOptions struct {
	// Version is reported as the service.version resource attribute.
	Version string
	// Logger receives export errors; nil discards them.
	Logger *slog.Logger
	// Getenv reads the OTEL_* environment; nil means os.Getenv.
	Getenv func(string) string
}

// Telemetry is weir's OpenTelemetry SDK setup: metrics always (for
// /metrics), and OTLP push of metrics and traces when configured through
// the environment:
//
//	OTEL_EXPORTER_OTLP_ENDPOINT          base URL, e.g. http://127.0.0.1:4318 (metrics and traces)
//	OTEL_EXPORTER_OTLP_METRICS_ENDPOINT  full URL for metrics only (…/v1/metrics)
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   full URL for traces only (…/v1/traces)
//	OTEL_EXPORTER_OTLP_HEADERS           e.g. authorization=Bearer%20xyz
//	OTEL_METRIC_EXPORT_INTERVAL          push interval in ms (default 60000)
//	OTEL_METRICS_EXPORTER / OTEL_TRACES_EXPORTER = none   turn one off
//	OTEL_SDK_DISABLED=true               no OTLP at all
//	OTEL_RESOURCE_ATTRIBUTES             extra resource attributes
//
// The protocol is OTLP/HTTP with protobuf (port 4318); OTLP/gRPC is not
// supported.
type Telemetry struct {
	// Metrics tracks running pipelines; its Track method is wired into
	// Options by RunOptions.
	Metrics *Metrics
	// MeterProvider is the SDK meter provider (Prometheus reader, plus a
	// periodic OTLP reader when configured).
	MeterProvider *sdkmetric.MeterProvider
	// TracerProvider is nil unless OTLP traces are configured.
	TracerProvider *sdktrace.TracerProvider
	// OTLPMetrics and OTLPTraces say what is pushed.
	OTLPMetrics, OTLPTraces bool

	registry *prometheus.Registry
}

// NewTelemetry sets up the SDK. Call Shutdown when done, to push the last
// figures.
func NewTelemetry(ctx context.Context, o TelemetryOptions) (*Telemetry, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "weir"), attribute.String("service.version", o.Version)))
	if err != nil && res == nil {
		return nil, fmt.Errorf("runtime: telemetry resource: %w", err)
	}
	t := &Telemetry{registry: prometheus.NewRegistry()}
	t.Metrics, _ = NewMetrics(nil) // instruments registered below, once the provider exists
	promExp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithProducer(t.Metrics.Producer()),
		otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("runtime: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}

	disabled := strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true")
	base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	t.OTLPMetrics = !disabled && (base || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "") && getenv("OTEL_METRICS_EXPORTER") != "none"
	t.OTLPTraces = !disabled && (base || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") && getenv("OTEL_TRACES_EXPORTER") != "none"
	if p := getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" && (t.OTLPMetrics || t.OTLPTraces) {
		logger.Warn("OTLP protocol not supported; using http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL", p)
	}
	if t.OTLPMetrics {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("runtime: OTLP metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithProducer(t.Metrics.Producer()))))
	}
	t.MeterProvider = sdkmetric.NewMeterProvider(mopts...)
	if err := t.Metrics.register(t.MeterProvider.Meter(MeterName)); err != nil {
		return nil, fmt.Errorf("runtime: register metrics: %w", err)
	}
	if t.OTLPTraces {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("runtime: OTLP trace exporter: %w", err)
		}
		t.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	}
	return t, nil
}

// RunOptions returns opts with the pipelines' stats tracked for metrics
// and checkpoints traced, keeping any OnStats and OnCheckpoint already set.
func (t *Telemetry) RunOptions(opts Options) Options {
	prevStats := opts.OnStats
	opts.OnStats = func(s *Stats) {
		t.Metrics.Track(s)
		if prevStats != nil {
			prevStats(s)
		}
	}
	if t.TracerProvider != nil {
		spans := CheckpointSpans(t.TracerProvider.Tracer(MeterName))
		prev := opts.OnCheckpoint
		opts.OnCheckpoint = func(c CheckpointTrace) {
			spans(c)
			if prev != nil {
				prev(c)
			}
		}
	}
	return opts
}

// MetricsHandler serves the metrics in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Shutdown pushes the last figures and spans over OTLP (when configured)
// and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.TracerProvider != nil {
		errs = append(errs, t.TracerProvider.Shutdown(ctx))
	}
	errs = append(errs, t.MeterProvider.Shutdown(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("runtime: telemetry shutdown: %w", err)
	}
	return nil
}
