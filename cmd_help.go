package main

import (
	"flag"
	"fmt"
	"io"
)

// helpError is returned by a command given -h or --help: run prints that
// command's usage to stdout and exits 0.
type helpError struct{ fs *flag.FlagSet }

func (e helpError) Error() string { return e.fs.Name() + ": help requested" }
func (e helpError) Unwrap() error { return flag.ErrHelp }

// synopses are the usage lines of each command, by flag set name.
var synopses = map[string]string{
	"run":                 "weir run [-c FILE] [--pipeline NAME]... [--log-level LEVEL] [--log-format auto|text|json]\n         [--quiet] [--watch [--watch-interval 1s]] [--http ADDR] [--fail-fast]\n\nRuns the pipelines of FILE (default ./pipelines.yaml) until their input ends or SIGINT/SIGTERM.",
	"validate":            "weir validate [-c FILE]\n\nChecks a configuration and prints every error and warning with file:line:column.",
	"checkpoints":         "weir checkpoints [-c FILE] [--pipeline NAME]... [--json]\n\nSummarizes each pipeline's newest checkpoint: source positions, operator state sizes, sink tokens, tasks; --json prints it as stored.",
	"test":                "weir test [-c FILE] [--pipeline NAME]... [-v]\n\nRuns the pipelines' `tests:`.",
	"state":               "weir state reset [-c FILE] --pipeline NAME [--operator ID]\n\nChanges a stopped pipeline's stored state.",
	"state reset":         "weir state reset [-c FILE] --pipeline NAME [--operator ID]\n\nDrops operator state from the pipeline's newest checkpoint, for a stateful operator whose configuration changed\n(a window of another size): the next run starts it empty from the committed positions. The pipeline must be stopped.",
	"replay-dead-letters": "weir replay-dead-letters FILE --pipeline NAME [-c FILE] [--reason R]... [--component C]...\n\nFeeds the original bytes of the dead letters in FILE back into the pipeline, once their cause is fixed,\nexactly once: a replay killed and run again resumes; run again when done, it adds nothing. The pipeline must be stopped.",
	"schema":              "weir schema\n\nPrints the JSON Schema of the YAML configuration.",
	"wal":                 "weir wal stat DIR | weir wal dump DIR [--from N] | weir wal verify DIR [--repair [--yes]]\n\nInspects, checks and repairs a write-ahead log directory.",
	"wal stat":            "weir wal stat DIR\n\nPrints the segments and record counts of a write-ahead log.",
	"wal dump":            "weir wal dump DIR [--from N]\n\nPrints the records of a write-ahead log from index N.",
	"wal verify":          "weir wal verify DIR [--repair [--yes]]\n\nChecks every record of a write-ahead log; --repair truncates a torn tail.",
}

// printHelp prints the usage of the command whose flags are fs.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	syn, ok := synopses[fs.Name()]
	if !ok {
		syn = "weir " + fs.Name()
	}
	fmt.Fprintf(w, "usage: %s\n", syn)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }
