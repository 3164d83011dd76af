package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/weirhq/weir/internal/pipetest"
	"github.com/weirhq/weir/runtime"
)

// cmdTest runs the `tests:` of each pipeline (see internal/pipetest for
// the format): input records through the operators, output compared with
// the expected records. It prints PASS or FAIL per test, with a diff for a
// failure, and returns an error (exit 1) when any test failed.
func cmdTest(args []string, stdout io.Writer) error {
	fs := newFlags("test")
	file := fs.String("c", "pipelines.yaml", "configuration file")
	var only names
	fs.Var(&only, "pipeline", "test only this pipeline (repeatable)")
	verbose := fs.Bool("v", false, "show the output of passing tests too")
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
	ctx := context.Background()
	total, failed := 0, 0
	for _, spec := range specs {
		// A pipeline split at its repartitions is tested in one piece, as
		// written: its tests are on its last stage.
		if spec.Tests == nil {
			continue
		}
		spec = spec.AsWritten()
		cases, err := pipetest.Cases(cfg.File, spec)
		if err != nil {
			return err
		}
		for _, c := range cases {
			total++
			r := pipetest.Run(ctx, spec, c)
			what := "pipeline"
			if c.Operator >= 0 {
				what = spec.Operators[c.Operator].ID
			}
			switch {
			case r.Err != nil:
				failed++
				fmt.Fprintf(stdout, "FAIL %s: %s (%s, %s)\n  error: %v\n", spec.Name, c.Name, what, c.Pos, r.Err)
			case !r.Passed:
				failed++
				fmt.Fprintf(stdout, "FAIL %s: %s (%s, %s)\n  - want, + got:\n%s", spec.Name, c.Name, what, c.Pos, pipetest.Diff(r.Want, r.Got))
			default:
				fmt.Fprintf(stdout, "PASS %s: %s\n", spec.Name, c.Name)
				if *verbose {
					fmt.Fprint(stdout, indent(r.Got))
				}
			}
		}
	}
	if total == 0 {
		fmt.Fprintf(stdout, "no tests in %s (add `tests:` to a pipeline)\n", cfg.File)
		return nil
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", total-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d pipeline tests failed", failed, total)
	}
	return nil
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
