package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
	"github.com/weirhq/weir/sources"
)

// cmdReplay feeds the original bytes of dead letters back into their
// pipeline, once the cause is fixed: the pipeline runs with its sources
// replaced by a dead_letters source over FILE (sources.DeadLettersConfig),
// under a name of its own, P-replay-<hash of FILE and the filters>, so
// that the replay keeps its own checkpoints. It is exactly-once as any
// run: killed and run again, it resumes from its last checkpoint, and run
// again once done, it adds nothing. The pipeline itself must be stopped.
func cmdReplay(args []string, stderr io.Writer) error {
	fs := newFlags("replay-dead-letters")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	name := fs.String("pipeline", "", "the pipeline to replay into (required)")
	var reasons, components names
	fs.Var(&reasons, "reason", "only dead letters with this `reason` (repeatable)")
	fs.Var(&components, "component", "only dead letters from this `component`, such as operators[1]/map (repeatable)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if len(args) > 0 && isHelp(args[0]) {
		return helpError{fs}
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageError{"replay-dead-letters: want `replay-dead-letters FILE --pipeline NAME [-c FILE] [--reason R]... [--component C]...`"}
	}
	dead := args[0]
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *name == "" {
		return usageError{"replay-dead-letters: --pipeline is required"}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	if _, err := os.Stat(dead); err != nil {
		return fmt.Errorf("replay-dead-letters: %w", err)
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	specs, err := runtime.Select(cfg, []string{*name})
	if err != nil {
		return err
	}
	spec := specs[0]
	unlock, err := runtime.LockPipeline(cfg, spec.Name)
	if err != nil {
		return err
	}
	defer unlock()

	abs, _ := filepath.Abs(dead)
	sum := sha256.Sum256([]byte(abs + "\x00" + reasons.String() + "\x00" + components.String()))
	entry, ok := pipeline.Default.Lookup(pipeline.KindSource, "dead_letters")
	if !ok {
		return fmt.Errorf("replay-dead-letters: the dead_letters source is not registered")
	}
	src := &sources.DeadLettersConfig{Path: dead, Reasons: reasons, Components: components, Pipeline: spec.Name}
	replay := *spec
	replay.Name = spec.Name + "-replay-" + hex.EncodeToString(sum[:4])
	replay.Sources = []*pipeline.Component{{Kind: pipeline.KindSource, Name: "dead_letters", ID: "sources[0]/dead_letters",
		Pos: spec.Pos, Entry: entry, Config: src}}
	logger := slog.New(runtime.NewLogHandler(stderr, runtime.LogText, lv)).With("replay", replay.Name)
	logger.Info("replaying dead letters", "file", dead, "pipeline", spec.Name, "reasons", reasons.String(), "components", components.String())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		close(stop)
		<-sigs
		cancel()
	}()
	var stats *runtime.Stats
	err = runtime.RunPipeline(ctx, cfg, &replay, stop, runtime.Options{Logger: logger, OnStats: func(s *runtime.Stats) { stats = s }})
	if err != nil {
		return err
	}
	if stats != nil {
		fmt.Fprintf(stderr, "weir: replayed %d dead letter(s) of %s into pipeline %s (%d out, %d dead-lettered again); state in %s\n",
			stats.In(), dead, spec.Name, stats.Out(), stats.DeadLetter.Records.Load(), runtime.PipelineDir(cfg, replay.Name))
	}
	return nil
}
