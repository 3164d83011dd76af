package main

import (
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/weirhq/weir/runtime"
)

const stateUsage = "state: want `state reset [-c FILE] --pipeline NAME [--operator ID]`"

// cmdState changes a stopped pipeline's stored state: `state reset` drops
// operator state from its newest checkpoint (runtime.ResetState).
func cmdState(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{stateUsage}
	}
	if isHelp(args[0]) {
		return helpError{newFlags("state")}
	}
	if args[0] != "reset" {
		return usageError{fmt.Sprintf("state: unknown subcommand %q", args[0])}
	}
	fs := newFlags("state reset")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	name := fs.String("pipeline", "", "the pipeline whose state to reset (required)")
	operator := fs.String("operator", "", "only this `ID` (as weir checkpoints lists it; default: every operator)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *name == "" {
		return usageError{"state reset: --pipeline is required"}
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	specs, err := runtime.Select(cfg, []string{*name})
	if err != nil {
		return err
	}
	res, err := runtime.ResetState(cfg, specs[0], *operator)
	if err != nil {
		return err
	}
	if len(res.Dropped) == 0 {
		fmt.Fprintf(stdout, "pipeline %s: checkpoint %d holds no operator state to drop; nothing changed\n", *name, res.Checkpoint)
		return nil
	}
	for _, id := range slices.Sorted(maps.Keys(res.Dropped)) {
		fmt.Fprintf(stdout, "pipeline %s: checkpoint %d: dropped the state of %s (%s)\n", *name, res.Checkpoint, id, byteSize(res.Dropped[id]))
	}
	fmt.Fprintf(stdout, "the next run starts it empty from the committed positions; the checkpoint as it was is kept in %s\n", res.Backup)
	return nil
}
