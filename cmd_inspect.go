package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/weirhq/weir/runtime"
	"github.com/weirhq/weir/wal"
)

// cmdCheckpoints lists each pipeline's stored checkpoints and prints the
// newest in full: source positions, operator state sizes, sink tokens.
func cmdCheckpoints(args []string, stdout io.Writer) error {
	fs := newFlags("checkpoints")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	var only names
	fs.Var(&only, "pipeline", "only this pipeline (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	specs, err := runtime.Select(cfg, only)
	if err != nil {
		return err
	}
	for _, s := range specs {
		store := &runtime.CheckpointStore{Dir: runtime.CheckpointDir(cfg, s.Name)}
		ids, err := store.IDs()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pipeline %s: %d checkpoint(s) in %s %v\n", s.Name, len(ids), store.Dir, ids)
		if len(ids) == 0 {
			continue
		}
		c, err := store.Load(ids[len(ids)-1])
		if err != nil {
			return err
		}
		out, _ := json.MarshalIndent(c, "", "  ")
		fmt.Fprintf(stdout, "%s\n", out)
	}
	return nil
}

// cmdWAL inspects a write-ahead log directory.
func cmdWAL(args []string, stdout io.Writer) error {
	if len(args) < 2 {
		return usageError{"wal: want `wal stat DIR` or `wal dump DIR [--from N]`"}
	}
	sub, dir, rest := args[0], args[1], args[2:]
	switch sub {
	case "stat":
		if len(rest) > 0 {
			return usageError{fmt.Sprintf("wal stat: unexpected argument %q", rest[0])}
		}
		segs, err := wal.Stat(dir)
		if err != nil {
			return err
		}
		var total int64
		for _, s := range segs {
			fmt.Fprintf(stdout, "%+v\n", s)
			total += s.Size
		}
		fmt.Fprintf(stdout, "%d segment(s), %d bytes\n", len(segs), total)
		return nil
	case "dump":
		fs := newFlags("wal dump")
		from := fs.String("from", "0", "first index to dump")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		n, err := strconv.ParseUint(*from, 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("wal dump: --from: %v", err)}
		}
		return wal.Dump(stdout, dir, n)
	}
	return usageError{fmt.Sprintf("wal: unknown subcommand %q", sub)}
}
