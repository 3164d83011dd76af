package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/weirhq/weir/runtime"
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
		if tasks := c.Tasks(); len(tasks) > 0 {
			fmt.Fprintf(stdout, "tasks of checkpoint %d (their truth is in the sink's tasks table once committed):\n", c.ID)
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "  task\tnext offset\tgeneration\towner\tstate bytes")
			for _, t := range tasks {
				var sizes []string
				for _, id := range slices.Sorted(maps.Keys(t.StateBytes)) {
					sizes = append(sizes, fmt.Sprintf("%s=%d", id, t.StateBytes[id]))
				}
				fmt.Fprintf(w, "  %s\t%d\t%d\t%s\t%s\n", t.Task, t.Offset, t.Generation, t.Owner, strings.Join(sizes, " "))
			}
			w.Flush()
		}
	}
	return nil
}
