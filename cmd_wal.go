package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/weirhq/weir/wal"
)

const walUsage = "wal: want `wal stat DIR`, `wal dump DIR [--from N]` or `wal verify DIR [--repair [--yes]]`"

// cmdWAL inspects, checks and repairs a write-ahead log directory. Only
// `wal verify --repair` reads stdin, for its confirmation.
func cmdWAL(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{walUsage}
	}
	sub, rest := args[0], args[1:]
	if isHelp(sub) {
		return helpError{newFlags("wal")}
	}
	switch sub {
	case "stat":
		dir, err := parseDirFlags(newFlags("wal stat"), rest)
		if err != nil {
			return err
		}
		return walStat(dir, stdout)
	case "dump":
		fs := newFlags("wal dump")
		from := fs.String("from", "0", "first index to dump")
		dir, err := parseDirFlags(fs, rest)
		if err != nil {
			return err
		}
		n, err := strconv.ParseUint(*from, 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("wal dump: --from: %v", err)}
		}
		return walProblem(dir, wal.Report{}, wal.Dump(stdout, dir, n))
	case "verify":
		fs := newFlags("wal verify")
		repair := fs.Bool("repair", false, "truncate a torn tail, after confirmation")
		yes := fs.Bool("yes", false, "with --repair: do not ask")
		dir, err := parseDirFlags(fs, rest)
		if err != nil {
			return err
		}
		if *yes && !*repair {
			return usageError{"wal verify: --yes goes with --repair"}
		}
		return walVerify(dir, *repair, *yes, stdin, stdout, stderr)
	}
	return usageError{fmt.Sprintf("wal: unknown subcommand %q", sub)}
}

// parseDirFlags parses args holding one DIR argument, with flags before or
// after it.
func parseDirFlags(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", helpError{fs}
		}
		return "", usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	if fs.NArg() == 0 {
		return "", usageError{walUsage}
	}
	dir := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	return dir, nil
}

// walStat prints a table of the log's segments under a one-line summary.
func walStat(dir string, stdout io.Writer) error {
	r, err := wal.Verify(dir)
	if len(r.Segments) > 0 {
		fmt.Fprintf(stdout, "%s: %s\n", dir, walSummary(r))
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  segment\trecords\tfirst\tlast\tbytes")
		for _, s := range r.Segments {
			first, last := "-", "-"
			if s.Records > 0 {
				first, last = strconv.FormatUint(s.FirstIndex, 10), strconv.FormatUint(s.FirstIndex+s.Records-1, 10)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d\n", filepath.Base(s.Path), s.Records, first, last, s.Size)
		}
		tw.Flush()
		if t := r.Torn; t != nil && err == nil {
			fmt.Fprintf(stdout, "%s; the pipeline truncates it when it next starts, or run `weir wal verify --repair %s`\n", describeTorn(t), dir)
		}
	}
	return walProblem(dir, r, err)
}

// walVerify checks the log and, with repair, truncates a torn tail once
// the user agrees (or yes is set). A clean log prints a summary and
// returns nil; any problem is returned as a report.
func walVerify(dir string, repair, yes bool, stdin io.Reader, stdout, stderr io.Writer) error {
	r, err := wal.Verify(dir)
	if err != nil {
		var ce *wal.CorruptionError
		if repair && errors.As(err, &ce) {
			return fmt.Errorf("%w\nNothing was changed: --repair truncates a torn tail only.", walProblem(dir, r, err))
		}
		return walProblem(dir, r, err)
	}
	if r.Torn == nil {
		fmt.Fprintf(stdout, "%s: ok: %s\n", dir, walSummary(r))
		return nil
	}
	t := r.Torn
	if !repair {
		return fmt.Errorf("wal verify %s: %s\n"+
			"  file: %s\n"+
			"  intact: %s\n"+
			"A crash in the middle of a write leaves this behind. The pipeline truncates it when it next starts; to do it now, run `weir wal verify --repair %s`.\n"+
			"(If a pipeline is writing to this log right now, these bytes may be a record being written: verify again once it has stopped.)",
			dir, describeTorn(t), t.Path, intact(r), dir)
	}
	fmt.Fprintf(stderr, "%s: %s\n", dir, describeTorn(t))
	question := fmt.Sprintf("truncate %s at %d? [y/N] ", t.Path, t.Offset)
	if t.Header {
		question = fmt.Sprintf("re-create %s holding no records? [y/N] ", t.Path)
	}
	if !yes {
		fmt.Fprint(stderr, question)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			if answer == "" {
				fmt.Fprintln(stderr)
			}
			return fmt.Errorf("wal verify %s: the torn tail is left as it is (pass --yes to truncate it without asking)", dir)
		}
	}
	if err := wal.TruncateTornTail(dir, *t); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: removed the torn tail of %s: %d bytes at offset %d\n", dir, filepath.Base(t.Path), t.Bytes, t.Offset)
	r, err = wal.Verify(dir)
	if err != nil {
		return walProblem(dir, r, err)
	}
	if r.Torn != nil { // written to since: another crash, or a pipeline running now
		return fmt.Errorf("wal verify %s: after the repair: %s", dir, describeTorn(r.Torn))
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", dir, walSummary(r))
	return nil
}

// walSummary is a one-line description of a verified log.
func walSummary(r wal.Report) string {
	s := fmt.Sprintf("%s, %s, %d bytes", count(len(r.Segments), "segment"), count(int(r.Records), "record"), r.Bytes)
	if r.NextIndex > r.FirstIndex {
		return s + fmt.Sprintf(", first index %d, last index %d", r.FirstIndex, r.NextIndex-1)
	}
	return s + fmt.Sprintf(", next index %d", r.NextIndex)
}

// describeTorn says where a torn tail is and what is wrong there.
func describeTorn(t *wal.TornTail) string {
	what := "are not a whole record"
	if t.Header {
		what = "are an unfinished segment header: the segment holds no records"
	}
	return fmt.Sprintf("segment %s ends in a torn tail: %d bytes at offset %d %s (%v)", filepath.Base(t.Path), t.Bytes, t.Offset, what, t.Reason)
}

// intact says which records read back before the first problem.
func intact(r wal.Report) string {
	if r.NextIndex == r.FirstIndex {
		return "no records before it"
	}
	return fmt.Sprintf("records %d to %d read back", r.FirstIndex, r.NextIndex-1)
}

// walProblem turns an error from reading the log in dir into the report a
// user acts on: for damage in the middle, where it is and what can be done;
// for a directory that is not a WAL, where the WALs are. r is what Verify
// read before the damage, if known. A nil err stays nil.
func walProblem(dir string, r wal.Report, err error) error {
	var ce *wal.CorruptionError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		var b strings.Builder
		fmt.Fprintf(&b, "%v\n", err)
		if n := len(r.Segments); n > 0 && r.Segments[n-1].FirstIndex == ce.Segment {
			fmt.Fprintf(&b, "  file: %s, offset %d\n", r.Segments[n-1].Path, ce.Offset)
			fmt.Fprintf(&b, "  intact: %s; from index %d on, the log cannot be read\n", intact(r), r.NextIndex)
		}
		fmt.Fprintf(&b, "This is damage in the middle of the log, not a torn tail: a crash does not leave it, and weir will not cut it away, since every record after it would go too. The pipeline that owns this log will not start until it is dealt with. What you can do:\n")
		fmt.Fprintf(&b, "  - restore %s from a backup, if you have one;\n", dir)
		fmt.Fprintf(&b, "  - otherwise keep a copy (cp -a %s %s.damaged) and save the records that still read back: weir wal dump %s > wal-records.txt;\n", dir, filepath.Clean(dir), dir)
		if pdir, ok := pipelineDirOf(dir); ok {
			fmt.Fprintf(&b, "  - to start the pipeline afresh without this log, move its whole directory aside (mv %s %s.damaged): its checkpoints go too, so the records it had not committed are lost, and its other sources read their input again from the start, which outputs may then hold twice;\n", pdir, pdir)
		}
		fmt.Fprintf(&b, "  - look for the cause: a failing disk (dmesg, smartctl) or another program writing into %s.", dir)
		return errors.New(b.String())
	case errors.Is(err, wal.ErrNotLog), errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w\n%s", err, walHint(dir))
	}
	return err
}

// pipelineDirOf returns the pipeline directory that holds the ingest WAL
// dir, <data_dir>/<pipeline>/<source>/wal, when dir is laid out as one.
func pipelineDirOf(dir string) (string, bool) {
	if filepath.Base(filepath.Clean(dir)) != "wal" {
		return "", false
	}
	pdir := filepath.Dir(filepath.Dir(filepath.Clean(dir)))
	if fi, err := os.Stat(filepath.Join(pdir, "checkpoints")); err != nil || !fi.IsDir() {
		return "", false
	}
	return pdir, true
}

// walHint says where weir keeps its WALs and lists those it finds under
// dir and under ./.weir, the default data_dir.
func walHint(dir string) string {
	var b strings.Builder
	b.WriteString("weir keeps the ingest WAL of each source that cannot replay (stdin, amqp, mqtt, nats, under exactly_once) in " +
		"<data_dir>/<pipeline>/sources-<n>-<kind>/wal, e.g. .weir/app/sources-0-stdin/wal; data_dir is ./.weir unless the configuration sets it.\n")
	roots := []string{".weir"}
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() && filepath.Clean(dir) != ".weir" {
		roots = []string{dir, ".weir"}
	}
	seen := map[string]bool{}
	var found []string
	for _, root := range roots {
		logs, _ := wal.FindLogs(root)
		for _, l := range logs {
			if !seen[l] {
				seen[l] = true
				found = append(found, l)
			}
		}
	}
	where := strings.Join(roots, " or ")
	if len(found) == 0 {
		fmt.Fprintf(&b, "No WAL found under %s.", where)
		return b.String()
	}
	fmt.Fprintf(&b, "WALs found under %s:", where)
	for _, l := range found {
		fmt.Fprintf(&b, "\n  %s", l)
	}
	return b.String()
}

// count returns "1 noun" or "n nouns".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
