// Command weir runs stream-processing pipelines described in YAML.
//
//	weir run [-c pipelines.yaml] [--pipeline NAME]...   run pipelines (default command)
//	weir validate [-c pipelines.yaml]                   check a configuration, list every error
//	weir checkpoints [-c pipelines.yaml] [--pipeline NAME] [--json]  summarize the last checkpoint
//	weir state reset [-c pipelines.yaml] --pipeline NAME [--operator ID]  drop operator state
//	weir replay-dead-letters FILE --pipeline NAME [-c pipelines.yaml] [--reason R]... [--component C]...
//	weir wal stat|dump DIR [--from N]                   inspect a write-ahead log
//	weir wal verify DIR [--repair [--yes]]              check a write-ahead log, truncate a torn tail
//	weir test [-c pipelines.yaml] [--pipeline NAME]...  run the pipelines' `tests:`
//	weir schema                                         print the JSON Schema of the YAML
//	weir version                                        print the version
//
// Exit codes: 0 success (including a graceful stop on SIGINT/SIGTERM after
// the final checkpoint); 1 the configuration is invalid or a pipeline
// failed (the last good checkpoint is kept); 2 wrong usage.
//
// `go run .` runs ./pipelines.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"golang.org/x/term"

	"github.com/weirhq/weir/internal/progress"
	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
	_ "github.com/weirhq/weir/sinks"
	_ "github.com/weirhq/weir/sources"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks errors that are the caller's wrong usage (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run runs the command line args, with os.Stdin as its input, and returns
// the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return runInput(args, os.Stdin, stdout, stderr)
}

// runInput is run reading stdin, which only a confirmation question does.
func runInput(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args, stderr)
	case "validate":
		err = cmdValidate(args, stdout)
	case "checkpoints":
		err = cmdCheckpoints(args, stdout)
	case "state":
		err = cmdState(args, stdout)
	case "savepoint":
		err = cmdSavepoint(args, stdout)
	case "replay-dead-letters":
		err = cmdReplay(args, stderr)
	case "wal":
		err = cmdWAL(args, stdin, stdout, stderr)
	case "test":
		err = cmdTest(args, stdout)
	case "schema":
		err = cmdSchema(args, stdout)
	case "version":
		fmt.Fprintf(stdout, "weir %s\n", version)
	case "help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	var ue usageError
	var he helpError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &he):
		printHelp(stdout, he.fs)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "weir: %v\n\n%s", err, usage)
		return exitUsage
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	default:
		fmt.Fprintf(stderr, "weir: %v\n", err)
		return exitFail
	}
}

const usage = `usage:
  weir run [-c FILE] [--pipeline NAME]... [--log-level LEVEL] [--log-format auto|text|json]
           [--quiet] [--watch [--watch-interval 1s]] [--http ADDR] [--fail-fast] [--from-savepoint NAME]
  weir test [-c FILE] [--pipeline NAME]... [-v]
  weir schema
  weir validate [-c FILE]
  weir checkpoints [-c FILE] [--pipeline NAME] [--json]
  weir savepoint [-c FILE] --pipeline NAME --name NAME | weir savepoint [-c FILE] --list [--pipeline NAME]
  weir state reset [-c FILE] --pipeline NAME [--operator ID]
  weir replay-dead-letters FILE --pipeline NAME [-c FILE] [--reason R]... [--component C]...
  weir wal stat DIR | weir wal dump DIR [--from N] | weir wal verify DIR [--repair [--yes]]
  weir version

FILE defaults to ./pipelines.yaml. Exit codes: 0 ok, 1 invalid config or
pipeline failure, 2 usage.
`

// names is a repeatable --pipeline flag.
type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(v string) error { *n = append(*n, v); return nil }

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpError{fs}
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func load(file string) (*pipeline.Config, error) {
	cfg, err := pipeline.LoadFile(file)
	if err != nil {
		var ce pipeline.ConfigErrors
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%d error(s) in the configuration:\n%w", len(ce), err)
		}
		return nil, err
	}
	return cfg, nil
}

func cmdValidate(args []string, stdout io.Writer) error {
	fs := newFlags("validate")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "%s: warning: %s\n", w.Pos, w.Msg)
	}
	for _, p := range cfg.Pipelines {
		part := ""
		if w := p.AsWritten(); w != p {
			part = fmt.Sprintf("; a part of %q split at a repartition, %s", w.Name, stageEnds(p))
		}
		fmt.Fprintf(stdout, "%s: pipeline %q ok (%s; %d sources, %d operators, %d sinks%s)\n",
			p.Pos, p.Name, p.Guarantee, len(p.Sources), len(p.Operators), len(p.Sinks), part)
	}
	return nil
}

// stageEnds says what a stage of a repartitioned pipeline reads and
// writes.
func stageEnds(p *pipeline.Spec) string {
	ids := func(cs []*pipeline.Component) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return strings.Join(out, ", ")
	}
	return "from " + ids(p.Sources) + " to " + ids(p.Sinks)
}

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	var only names
	fs.Var(&only, "pipeline", "run only this pipeline (repeatable)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "auto", "auto (text on a terminal, JSON otherwise), text or json")
	quiet := fs.Bool("quiet", false, "no progress lines, no summary")
	watch := fs.Bool("watch", false, "reload the configuration when the file changes")
	watchEvery := fs.Duration("watch-interval", time.Second, "how often --watch checks the file")
	httpAddr := fs.String("http", "", "admin endpoints address, overriding the configuration's http: key")
	failFast := fs.Bool("fail-fast", false, "stop every pipeline when one fails, instead of retrying it as its restart: says")
	fromSavepoint := fs.String("from-savepoint", "", "recover each pipeline run from its savepoint `NAME` (weir savepoint), not its newest checkpoint")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	tty := isTerminal(stderr)
	var logFormat runtime.LogFormat
	switch *format {
	case "auto":
		logFormat = runtime.LogJSON
		if tty {
			logFormat = runtime.LogText
		}
	case "text", "json":
		logFormat = runtime.LogFormat(*format)
	default:
		return usageError{fmt.Sprintf("--log-format: %q is not one of auto, text, json", *format)}
	}
	if *watchEvery <= 0 {
		return usageError{"--watch-interval: want a positive duration"}
	}
	rev, err := loadRevision(*file)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		rev.Config.HTTP = *httpAddr
	}
	if *fromSavepoint != "" {
		if err := restoreSavepoints(rev.Config, only, *fromSavepoint, stderr); err != nil {
			return err
		}
	}

	// Progress lines on a terminal; logs then print above them.
	tracker := progress.NewTracker()
	logOut := stderr
	var display *progress.Display
	if tty && !*quiet {
		display = progress.Start(stderr, tracker, progress.Options{Width: func() int { return terminalWidth(stderr) }})
		logOut = display.Writer()
	}
	stopDisplay := func() {
		if display != nil {
			display.Stop()
			display = nil
		}
	}
	defer stopDisplay()
	logger := slog.New(runtime.NewLogHandler(logOut, logFormat, lv))
	for _, w := range rev.Config.Warnings {
		logger.Warn("configuration", "at", w.Pos.String(), "warning", w.Msg)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("telemetry export", "err", err) }))

	// First SIGINT/SIGTERM: stop gracefully (final checkpoint, commit).
	// Second: stop at once; the last checkpoint stays valid. SIGHUP:
	// reload the configuration.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tel, err := runtime.NewTelemetry(ctx, runtime.TelemetryOptions{Version: version, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := tel.Shutdown(sctx); err != nil {
			logger.Warn("telemetry", "err", err)
		}
	}()
	sup, err := runtime.NewSupervisor(rev, only, tel.RunOptions(runtime.Options{Logger: logger, OnStats: tracker.Track, FailFast: *failFast}))
	if err != nil {
		return err
	}
	start := time.Now()
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	if rev.Config.HTTP != "" {
		ln, err := runtime.ListenAdmin(rev.Config.HTTP)
		if err != nil {
			return err
		}
		admin := &runtime.Admin{Status: sup.Status, Telemetry: tel, Version: version, Started: start}
		go func() {
			if err := admin.Serve(adminCtx, ln, logger); err != nil {
				logger.Error("admin endpoints", "err", err)
			}
		}()
		logger.Info("admin endpoints: /metrics /healthz /readyz", "addr", "http://"+ln.Addr().String())
	}
	if tel.OTLPMetrics || tel.OTLPTraces {
		logger.Info("pushing telemetry over OTLP/HTTP", "metrics", tel.OTLPMetrics, "traces", tel.OTLPTraces)
	}

	var reloadMu sync.Mutex // one reload at a time
	reload := func(why string) {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		next, err := loadRevision(*file)
		if err != nil {
			logger.Error("configuration not reloaded; the pipelines keep running as they were", "trigger", why, "err", err)
			return
		}
		if *httpAddr != "" {
			next.Config.HTTP = *httpAddr
		}
		res, err := sup.Reload(ctx, next)
		if err != nil {
			logger.Error("configuration not reloaded", "trigger", why, "err", err)
			return
		}
		logger.Info("configuration reloaded", "trigger", why, "changes", res.String())
	}
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go func() {
		<-sigs
		logger.Info("stopping: taking a final checkpoint (signal again to stop at once)")
		close(stop)
		<-sigs
		cancel()
	}()
	go func() {
		for {
			select {
			case <-hups:
				reload("SIGHUP")
			case <-adminCtx.Done():
				return
			}
		}
	}()
	if *watch {
		go runtime.WatchFile(adminCtx, *file, *watchEvery, func() { reload("file changed") })
	}

	err = sup.Run(ctx, stop)
	stopAdmin()
	stopDisplay()
	if !*quiet {
		tracker.Summary(stderr, time.Since(start))
	}
	return err
}

// loadRevision loads the configuration as load does, with the pipelines'
// fingerprints for reloads.
func loadRevision(file string) (*runtime.Revision, error) {
	rev, err := runtime.LoadRevision(pipeline.Default, file)
	if err != nil {
		var ce pipeline.ConfigErrors
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%d error(s) in the configuration:\n%w", len(ce), err)
		}
		return nil, err
	}
	return rev, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth returns w's width in columns, 0 when unknown.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil {
			return cols
		}
	}
	return 0
}
