package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/runtime"
)

// cmdCheckpoints lists each pipeline's stored checkpoints and summarizes
// the newest: when it was taken, each source's position, each operator's
// state size, each sink's commit token, and the tasks. --json prints the
// newest checkpoint as stored instead.
func cmdCheckpoints(args []string, stdout io.Writer) error {
	fs := newFlags("checkpoints")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	var only names
	fs.Var(&only, "pipeline", "only this pipeline (repeatable)")
	raw := fs.Bool("json", false, "print the newest checkpoint as stored, as JSON")
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
		if *raw {
			if len(ids) == 0 {
				fmt.Fprintf(stdout, "{\"pipeline\": %q, \"checkpoints\": []}\n", s.Name)
				continue
			}
			c, err := store.Load(ids[len(ids)-1])
			if err != nil {
				return err
			}
			out, _ := json.MarshalIndent(c, "", "  ")
			fmt.Fprintf(stdout, "%s\n", out)
			continue
		}
		if len(ids) == 0 {
			fmt.Fprintf(stdout, "pipeline %s: no checkpoint yet in %s\n", s.Name, store.Dir)
			continue
		}
		c, err := store.Load(ids[len(ids)-1])
		if err != nil {
			return err
		}
		printCheckpoint(stdout, s.Name, store.Dir, ids, c)
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

// printCheckpoint writes the readable summary of checkpoint c.
func printCheckpoint(w io.Writer, name, dir string, ids []uint64, c *runtime.Checkpoint) {
	kept := make([]string, len(ids))
	for i, id := range ids {
		kept[i] = strconv.FormatUint(id, 10)
	}
	fmt.Fprintf(w, "pipeline %s: checkpoint %d in %s, taken %s (%s ago)", name, c.ID, dir,
		c.Time.UTC().Format(time.RFC3339), time.Since(c.Time).Round(time.Second))
	if c.InputDone {
		fmt.Fprint(w, "; input done: a rerun has nothing left to read")
	}
	fmt.Fprintf(w, "\n  kept: %s\n", strings.Join(kept, ", "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title, what string, states []runtime.ComponentState, show func(runtime.Blob) string) {
		if len(states) == 0 {
			return
		}
		fmt.Fprintf(tw, "  %s\t%s\n", title, what)
		for _, st := range states {
			fmt.Fprintf(tw, "    %s\t%s\n", st.ID, show(st.State))
		}
	}
	section("sources", "position", c.Sources, summarizeState)
	section("operators", "state", c.Operators, func(b runtime.Blob) string {
		if len(b) == 0 {
			return "none"
		}
		return byteSize(len(b))
	})
	section("sinks", "commit token", c.Sinks, summarizeState)
	tw.Flush()
}

// summarizeState shows a state on one line: compact JSON, cut after 160
// characters with its size; binary state as its size.
func summarizeState(b runtime.Blob) string {
	if len(b) == 0 {
		return "none"
	}
	if !json.Valid(b) {
		return byteSize(len(b)) + " (binary)"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return byteSize(len(b))
	}
	s := buf.String()
	if len(s) > 160 {
		s = s[:160] + "... (" + byteSize(len(b)) + ")"
	}
	return s
}

// byteSize writes n bytes in B, KiB, MiB or GiB.
func byteSize(n int) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
