package main

import (
	"fmt"
	"io"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// cmdSavepoint keeps a stopped pipeline's newest checkpoint under a name
// (`weir savepoint --pipeline P --name N`), or lists the kept ones
// (`--list`). `weir run --from-savepoint N` restores one.
func cmdSavepoint(args []string, stdout io.Writer) error {
	fs := newFlags("savepoint")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	name := fs.String("pipeline", "", "the stopped pipeline to keep a savepoint of (required unless --list)")
	sp := fs.String("name", "", "the savepoint's `NAME` (letters, digits, '.', '_', '-')")
	list := fs.Bool("list", false, "list the savepoints (of --pipeline, or of every pipeline)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	if *list {
		var names []string
		if *name != "" {
			names = []string{*name}
		}
		specs, err := runtime.Select(cfg, names)
		if err != nil {
			return err
		}
		for _, spec := range specs {
			sps, err := runtime.Savepoints(cfg, spec)
			if err != nil {
				return err
			}
			for _, s := range sps {
				fmt.Fprintf(stdout, "%s\t%s\tcheckpoint %d, taken %s%s\n", s.Pipeline, s.Name, s.Checkpoint,
					s.Taken.Format(time.RFC3339), map[bool]string{true: ", input done"}[s.InputDone])
			}
		}
		return nil
	}
	if *name == "" || *sp == "" {
		return usageError{"savepoint: --pipeline and --name are required (or --list)"}
	}
	specs, err := runtime.Select(cfg, []string{*name})
	if err != nil {
		return err
	}
	s, err := runtime.TakeSavepoint(cfg, specs[0], *sp)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pipeline %s: savepoint %q keeps checkpoint %d (taken %s) in %s; `weir run --from-savepoint %s` restores it\n",
		s.Pipeline, s.Name, s.Checkpoint, s.Taken.Format(time.RFC3339), s.Dir, s.Name)
	return nil
}

// restoreSavepoints makes the savepoint name the newest checkpoint of each
// pipeline run (only, or all), before they start.
func restoreSavepoints(cfg *pipeline.Config, only []string, name string, stderr io.Writer) error {
	specs, err := runtime.Select(cfg, only)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		s, id, err := runtime.RestoreSavepoint(cfg, spec, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "pipeline %s: restored savepoint %q (checkpoint %d) as checkpoint %d\n", s.Pipeline, s.Name, s.Checkpoint, id)
	}
	return nil
}
