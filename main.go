// Command weir runs stream-processing pipelines described in YAML.
//
//	weir run [-c pipelines.yaml] [--pipeline NAME]...   run pipelines (default command)
//	weir validate [-c pipelines.yaml]                   check a configuration, list every error
//	weir checkpoints [-c pipelines.yaml] [--pipeline NAME]  show the last checkpoints
//	weir wal stat|dump DIR [--from N]                   inspect a write-ahead log
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

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
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
	case "wal":
		err = cmdWAL(args, stdout)
	case "version":
		fmt.Fprintf(stdout, "weir %s\n", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	var ue usageError
	switch {
	case err == nil:
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
  weir run [-c FILE] [--pipeline NAME]... [--log-level LEVEL] [--quiet]
  weir validate [-c FILE]
  weir checkpoints [-c FILE] [--pipeline NAME]
  weir wal stat DIR | weir wal dump DIR [--from N]
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
			return err
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
	for _, p := range cfg.Pipelines {
		fmt.Fprintf(stdout, "%s: pipeline %q ok (%s; %d sources, %d operators, %d sinks)\n",
			p.Pos, p.Name, p.Guarantee, len(p.Sources), len(p.Operators), len(p.Sinks))
	}
	return nil
}

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	var only names
	fs.Var(&only, "pipeline", "run only this pipeline (repeatable)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	quiet := fs.Bool("quiet", false, "no summary")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg, err := load(*file)
	if err != nil {
		return err
	}

	// First SIGINT/SIGTERM: stop gracefully (final checkpoint, commit).
	// Second: stop at once; the last checkpoint stays valid.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		logger.Info("stopping: taking a final checkpoint (signal again to stop at once)")
		close(stop)
		<-sigs
		cancel()
	}()

	var (
		mu  sync.Mutex // guards all: pipelines start concurrently
		all []*runtime.Stats
	)
	onStats := func(s *runtime.Stats) { mu.Lock(); all = append(all, s); mu.Unlock() }
	start := time.Now()
	err = runtime.Run(ctx, cfg, only, stop, runtime.Options{Logger: logger, OnStats: onStats})
	mu.Lock()
	defer mu.Unlock()
	if !*quiet {
		el := time.Since(start)
		for _, s := range all {
			in := s.In()
			fmt.Fprintf(stderr, "weir: %s: %d records in, %d out, %d dead-lettered, %d checkpoints, %.1fs (%.0f records/s)\n",
				s.Pipeline, in, s.Out(), s.DeadLetter.Records.Load(), s.Checkpoints.Load(), el.Seconds(), float64(in)/el.Seconds())
		}
	}
	return err
}
