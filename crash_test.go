package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/weirhq/weir/internal/crashtest"
)

// The crash tests run weir as a child process, kill it with SIGKILL at
// random moments (during reads, checkpoints and commits alike), restart it
// until its finite input is done, and check the committed output against
// an uninterrupted run (byte-identical) and against the input (every
// expected record exactly once).
//
// Short by default (at least 20 kills per pipeline); set WEIR_CRASH_KILLS
// to run long, e.g. WEIR_CRASH_KILLS=500 go test -run Crash -timeout 1h .
func crashKills(t *testing.T) int {
	if s := os.Getenv("WEIR_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("WEIR_CRASH_KILLS=%q: %v", s, err)
		}
		return n
	}
	if testing.Short() {
		return 5
	}
	return 20
}

// writeCrashInput writes files of JSON log lines: i counts up, every 10th
// line is an error, and every 997th line is malformed (for dead letters).
func writeCrashInput(t *testing.T, dir string, files, perFile int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	services := []string{"api", "auth", "billing", "search"}
	i := 0
	for f := range files {
		fh, err := os.Create(filepath.Join(dir, fmt.Sprintf("app-%d.log", f)))
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(fh)
		for range perFile {
			if i%997 == 0 {
				fmt.Fprintf(w, "{\"i\":%d,\"level\":broken\n", i)
			} else {
				level := "info"
				if i%10 == 0 {
					level = "error"
				}
				ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 7 * time.Millisecond)
				fmt.Fprintf(w, `{"ts":"%s","i":%d,"level":"%s","service":"%s","latency_ms":%d.%d,"status":%d}`+"\n",
					ts.Format("2006-01-02T15:04:05.000Z"), i, level, services[i%len(services)], i%300, i%10, 200+(i%7)*50)
			}
			i++
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
}

const crashConfig = `data_dir: %[1]s/data
pipelines:
  - name: crash
    checkpoint_interval: 40ms
    sources:
      - file: { paths: ["%[2]s/*.log"] }
    operators:
      - parse: { format: json }
      - filter: 'level == "error"'
      - map: { alert: 'status >= 500', twice: 'i * 2' }
    sinks:
      - file: { path: "%[1]s/out/errors.jsonl", max_bytes: 400000 }
    dead_letter:
      file: { path: "%[1]s/out/dead.jsonl" }
`

// readTree returns every file under dir (relative path → content) but
// weir's output lock files.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(d.Name(), ".weir-lock") {
			return nil // an output lock (runtime/output_lock.go), not output
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// crashRun writes config (%[1]s: dir, %[2]s: the input directory) to dir
// and runs it until it exits 0, killing it kills times with delays up to
// maxDelay.
func crashRun(t *testing.T, name, bin, dir, in, config string, kills int, maxDelay time.Duration) crashtest.Result {
	t.Helper()
	cfg := filepath.Join(dir, "p.yaml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, config, dir, in), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfg, "--quiet"}, Dir: dir, Seed: uint64(kills) + 7, Log: t.Logf,
		MinDelay: 5 * time.Millisecond, MaxDelay: maxDelay}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := h.Run(ctx, kills)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// crashRunKilled runs config in root/killed-N until a run got at least
// kills kills before the input was done, and returns that run's directory.
// Kill delays scale with how long the work takes uninterrupted (ref), so
// that every kill lands while there is work left (Run returns at the first
// run that finishes), including during start-up and recovery. The
// machine's load can change between runs: when the input was done before
// enough kills, it starts over from nothing with shorter delays.
func crashRunKilled(t *testing.T, name, bin, root, in, config string, kills int, ref time.Duration) (string, crashtest.Result, time.Duration) {
	t.Helper()
	var res crashtest.Result
	var maxDelay time.Duration
	killed := ""
	for attempt := range 4 {
		maxDelay = max(ref/time.Duration(8<<attempt), 20*time.Millisecond)
		killed = filepath.Join(root, fmt.Sprintf("killed-%d", attempt))
		res = crashRun(t, name, bin, killed, in, config, kills, maxDelay)
		if res.Kills >= kills {
			break
		}
		t.Logf("attempt %d: only %d kills before the input was done; again with shorter delays", attempt, res.Kills)
	}
	if res.Kills < kills {
		t.Fatalf("only %d kills before the input was done", res.Kills)
	}
	return killed, res, maxDelay
}

func runCrash(t *testing.T, name, config string, check func(t *testing.T, out map[string]string)) {
	bin := crashtest.Build(t)
	root := t.TempDir()
	in := filepath.Join(root, "in")
	writeCrashInput(t, in, 3, 40000)
	refRun := crashRun(t, name, bin, filepath.Join(root, "reference"), in, config, 0, 0)
	killed, res, maxDelay := crashRunKilled(t, name, bin, root, in, config, crashKills(t), refRun.Elapsed)
	ref := readTree(t, filepath.Join(root, "reference/out"))
	got := readTree(t, filepath.Join(killed, "out"))
	if len(ref) == 0 {
		t.Fatal("reference run wrote nothing")
	}
	for f, want := range ref {
		if got[f] != want {
			t.Errorf("%s: after %d kills the output differs from the uninterrupted run (%d vs %d bytes)", f, res.Kills, len(got[f]), len(want))
		}
	}
	for f := range got {
		if _, ok := ref[f]; !ok {
			t.Errorf("%s: written only by the killed run", f)
		}
	}
	check(t, got)
	var worst time.Duration
	for _, d := range res.Recovery {
		worst = max(worst, d)
	}
	t.Logf("%s: %d kills in %d runs (kill delays up to %v; uninterrupted run %v); output byte-identical to the uninterrupted run; slowest recovery %v",
		name, res.Kills, res.Runs, maxDelay, refRun.Elapsed, worst)
}

// TestCrashFilePipelineExactlyOnce: file → parse → filter → map → rolling
// file sink, with dead letters.
func TestCrashFilePipelineExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	runCrash(t, "file pipeline", crashConfig, func(t *testing.T, out map[string]string) {
		var parts []string
		for f := range out {
			if strings.HasPrefix(f, "errors-") {
				parts = append(parts, f)
			}
		}
		sort.Strings(parts)
		if len(parts) < 2 {
			t.Fatalf("want several rolled parts, got %v", parts)
		}
		var seen []int
		for _, p := range parts {
			for _, line := range strings.Split(strings.TrimSuffix(out[p], "\n"), "\n") {
				var i int
				if _, err := fmt.Sscanf(line[strings.Index(line, `"i":`):], `"i":%d`, &i); err != nil {
					t.Fatalf("%s: bad line %q", p, line)
				}
				seen = append(seen, i)
			}
		}
		var want []int
		for i := range 120000 {
			if i%997 != 0 && i%10 == 0 {
				want = append(want, i)
			}
		}
		if !slices.Equal(seen, want) {
			t.Fatalf("output has %d error records, want %d (in order, each once)", len(seen), len(want))
		}
		dead := strings.Count(out["dead.jsonl"], "\n")
		if want := (120000 + 996) / 997; dead != want {
			t.Fatalf("dead letters: %d, want %d", dead, want)
		}
	})
}

const crashWindowConfig = `data_dir: %[1]s/data
pipelines:
  - name: crash-window
    checkpoint_interval: 40ms
    sources:
      - file: { paths: ["%[2]s/*.log"] }
    operators:
      - parse: { format: json }
      - window:
          tumbling: 10s
          event_time: ts
          watermark: 2s
          group_by: [service]
          aggregate:
            n: count()
            errors: 'sum(level == "error" ? 1 : 0)'
            total_ms: sum(latency_ms)
            p99: quantile(latency_ms, 0.99)
            last_i: last(i)
    sinks:
      - file: { path: "%[1]s/out/windows.jsonl" }
`

// TestCrashWindowExactlyOnce: window state goes through every checkpoint,
// so kills in the middle of open windows change nothing in the output.
func TestCrashWindowExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	runCrash(t, "window pipeline", crashWindowConfig, func(t *testing.T, out map[string]string) {
		// 120,000 records 7 ms apart (121 of them malformed): 840 s of
		// event time in 84 windows of 10 s, 4 services each.
		lines := strings.Split(strings.TrimSuffix(out["windows.jsonl"], "\n"), "\n")
		total := 0
		for _, l := range lines {
			var n int
			i := strings.Index(l, `"n":`)
			if i < 0 {
				t.Fatalf("bad window line %q", l)
			}
			fmt.Sscanf(l[i:], `"n":%d`, &n)
			total += n
		}
		if want := 120000 - (120000+996)/997; total != want {
			t.Fatalf("windows count %d records, want %d (each exactly once)", total, want)
		}
		if len(lines) != 84*4 {
			t.Fatalf("%d window results, want %d", len(lines), 84*4)
		}
	})
}

const crashParquetConfig = `data_dir: %[1]s/data
pipelines:
  - name: crash-parquet
    checkpoint_interval: 40ms
    sources:
      - file: { paths: ["%[2]s/*.log"] }
    operators:
      - parse: { format: json }
      - filter: 'level == "error"'
    sinks:
      - parquet:
          path: "%[1]s/out/lake"
          schema: { ts: "timestamp(ms)", i: int64, level: string, service: string, latency_ms: float64, status: int64 }
          partition_by: "service={{ service }}"
          max_file_bytes: 20000
`

// TestCrashParquetExactlyOnce kills weir while it rolls and commits Parquet
// parts; the rows in committed files are then exactly the input's errors.
// (Part names carry checkpoint ids, which differ between runs, so rows are
// compared rather than bytes.)
func TestCrashParquetExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	bin := crashtest.Build(t)
	root := t.TempDir()
	in := filepath.Join(root, "in")
	writeCrashInput(t, in, 3, 40000)
	kills := crashKills(t)
	var res crashtest.Result
	var out string
	for attempt := range 4 { // shorter kill delays when the input was done too soon
		dir := filepath.Join(root, fmt.Sprintf("run-%d", attempt))
		os.MkdirAll(dir, 0o755)
		cfg := filepath.Join(dir, "p.yaml")
		os.WriteFile(cfg, fmt.Appendf(nil, crashParquetConfig, dir, in), 0o644)
		h := &crashtest.Harness{Binary: bin, Args: []string{"run", "-c", cfg, "--quiet"}, Dir: dir, Seed: 11, Log: t.Logf,
			MinDelay: 5 * time.Millisecond, MaxDelay: (120 * time.Millisecond) >> attempt}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		var err error
		res, err = h.Run(ctx, kills)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out = dir
		if res.Kills >= kills {
			break
		}
	}
	if res.Kills < kills {
		t.Fatalf("only %d kills before the input was done", res.Kills)
	}
	type row struct {
		I int64 `parquet:"i"`
	}
	var got []int
	files, _ := filepath.Glob(filepath.Join(out, "out/lake/*/*.parquet"))
	for _, f := range files {
		rows, err := parquet.ReadFile[row](f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range rows {
			got = append(got, int(r.I))
		}
	}
	hidden, _ := filepath.Glob(filepath.Join(out, "out/lake/*/.*"))
	if len(hidden) > 0 {
		t.Fatalf("in-progress files visible: %v", hidden)
	}
	slices.Sort(got)
	var want []int
	for i := range 120000 {
		if i%997 != 0 && i%10 == 0 {
			want = append(want, i)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after %d kills: %d rows in %d committed files, want %d, each once", res.Kills, len(got), len(files), len(want))
	}
	t.Logf("parquet: %d kills in %d runs; %d rows in %d committed files, each input error exactly once", res.Kills, res.Runs, len(got), len(files))
}
