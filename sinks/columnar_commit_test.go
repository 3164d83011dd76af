package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// commitHarness runs the same two-phase-commit scenarios over both formats.
type commitHarness struct {
	name   string
	read   func(t testing.TB, path string) []map[string]any
	config func(t *testing.T, out string) pipeline.SinkConfig
}

// newSink builds the harness's sink writing to out, with its component
// directory under data.
func (h commitHarness) newSink(t *testing.T, out, data string, g pipeline.Guarantee) *ColumnarSink {
	return h.newSinkWith(t, out, testBuild(data, g))
}

// newSinkWith builds the harness's sink with b.
func (h commitHarness) newSinkWith(t *testing.T, out string, b pipeline.Build) *ColumnarSink {
	s, err := h.config(t, out).NewSink(b)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*ColumnarSink)
}

var commitHarnesses = []commitHarness{
	{
		name: "parquet",
		read: func(t testing.TB, path string) []map[string]any { _, rows := readParquet(t, path); return rows },
		config: func(t *testing.T, out string) pipeline.SinkConfig {
			cfg := NewParquetConfig()
			cfg.Path = out
			cfg.Schema = mustSchema(t, "struct<day: string!, n: int64!>")
			cfg.PartitionBy, _ = pipeline.CompileTemplate("day={{ day }}", pipeline.Pos{})
			return cfg
		},
	},
	{
		name: "arrow",
		read: func(t testing.TB, path string) []map[string]any { _, rows := readArrowFile(t, path); return rows },
		config: func(t *testing.T, out string) pipeline.SinkConfig {
			cfg := NewArrowConfig()
			cfg.Path = out
			cfg.Schema = mustSchema(t, "struct<day: string!, n: int64!>")
			cfg.PartitionBy, _ = pipeline.CompileTemplate("day={{ day }}", pipeline.Pos{})
			return cfg
		},
	},
}

// numbered returns records n = from..to-1 over two partitions.
func numbered(from, to int) []*pipeline.Record {
	var recs []*pipeline.Record
	for n := from; n < to; n++ {
		recs = append(recs, rec("day", fmt.Sprintf("d%d", n%2), "n", int64(n)))
	}
	return recs
}

// committedNumbers reads every visible file and returns the n values seen,
// sorted, failing on a hidden or unreadable file among the visible ones.
func (h commitHarness) committedNumbers(t *testing.T, out string) []int64 {
	t.Helper()
	var ns []int64
	for _, f := range visibleFiles(t, out) {
		for _, r := range h.read(t, filepath.Join(out, f)) {
			ns = append(ns, r["n"].(int64))
		}
	}
	slices.Sort(ns)
	return ns
}

func seq(from, to int) []int64 {
	var out []int64
	for n := from; n < to; n++ {
		out = append(out, int64(n))
	}
	return out
}

// snapshot records every file under dir with its content, to prove that an
// operation changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, f := range listFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		m[f] = string(b)
	}
	return m
}

func TestColumnarCrashAfterPreCommitRecovers(t *testing.T) {
	for _, h := range commitHarnesses {
		t.Run(h.name, func(t *testing.T) {
			dir := t.TempDir()
			out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
			ctx := context.Background()

			s := h.newSink(t, out, data, pipeline.ExactlyOnce)
			if err := s.Recover(ctx, nil); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s, numbered(0, 10)...)
			if files := listFiles(t, out); len(files) != 0 {
				t.Fatalf("before any commit, files in the output: %v", files)
			}
			tok1 := mustPreCommit(t, s, 1)
			mustCommit(t, s, tok1)
			mustWrite(t, s, numbered(10, 20)...)
			tok2 := mustPreCommit(t, s, 2)
			// Checkpoint 2 is durable; the process dies before Commit. It
			// had written more records after the barrier.
			mustWrite(t, s, numbered(20, 30)...)
			if err := s.Flush(ctx); err != nil { // rolled into staging: complete files, still not visible
				t.Fatal(err)
			}
			mustWrite(t, s, numbered(30, 35)...) // and some in open parts
			if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 10)) {
				t.Fatalf("before the crash, visible %v; want checkpoint 1 only", got)
			}
			// The crash: the sink is dropped without Commit or Close.

			s2 := h.newSink(t, out, data, pipeline.ExactlyOnce)
			if err := s2.Recover(ctx, tok2); err != nil {
				t.Fatal(err)
			}
			if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 20)) {
				t.Fatalf("after Recover(token 2): visible %v, want 0..19 exactly once", got)
			}
			if staged := listFiles(t, s2.staging); len(staged) != 0 {
				t.Errorf("staged files left after Recover: %v (records after the checkpoint must be discarded)", staged)
			}
			for _, f := range listFiles(t, out) {
				if strings.HasPrefix(filepath.Base(f), ".") {
					t.Errorf("hidden file left in the output: %s", f)
				}
			}

			// Committing again, in either process, changes nothing.
			before := snapshot(t, out)
			for _, tok := range [][]byte{tok2, tok1, tok2} {
				if err := s2.Commit(ctx, tok); err != nil {
					t.Fatalf("re-Commit: %v", err)
				}
			}
			if err := s2.Recover(ctx, tok2); err != nil {
				t.Fatalf("second Recover: %v", err)
			}
			if after := snapshot(t, out); !reflect.DeepEqual(before, after) {
				t.Errorf("a second Commit changed the output:\nbefore %v\nafter  %v", keys(before), keys(after))
			}

			// The replayed records go on from checkpoint 3.
			mustWrite(t, s2, numbered(20, 30)...)
			mustCommit(t, s2, mustPreCommit(t, s2, 3))
			if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 30)) {
				t.Fatalf("after replay: visible %v, want 0..29 exactly once", got)
			}
			if err := s2.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// A checkpoint whose Commit never ran (it failed, or the coordinator gave
// up on it) rides along in the next token.
func TestColumnarUncommittedTokenCarriedForward(t *testing.T) {
	h := commitHarnesses[0]
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	s := h.newSink(t, out, filepath.Join(dir, "data"), pipeline.ExactlyOnce)
	mustWrite(t, s, numbered(0, 4)...)
	mustPreCommit(t, s, 1) // never committed
	mustWrite(t, s, numbered(4, 8)...)
	tok2 := mustPreCommit(t, s, 2)
	var tok columnarToken
	if err := json.Unmarshal(tok2, &tok); err != nil {
		t.Fatal(err)
	}
	if len(tok.Files) != 4 {
		t.Errorf("token 2 lists %d files, want 4 (2 partitions x 2 checkpoints)", len(tok.Files))
	}
	mustCommit(t, s, tok2)
	if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 8)) {
		t.Errorf("visible %v, want 0..7", got)
	}
	tok3 := mustPreCommit(t, s, 3)
	if err := json.Unmarshal(tok3, &tok); err != nil || len(tok.Files) != 0 {
		t.Errorf("token 3 after committing token 2: %s, want no files", tok3)
	}
	if _, err := s.PreCommit(context.Background(), 2); err == nil {
		t.Error("PreCommit with a smaller checkpoint id succeeded")
	}
}

// Commit interrupted half way (one file linked, the staged name still
// there) finishes on the next try.
func TestColumnarCommitInterrupted(t *testing.T) {
	h := commitHarnesses[0]
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	s := h.newSink(t, out, data, pipeline.ExactlyOnce)
	mustWrite(t, s, numbered(0, 6)...)
	tokb := mustPreCommit(t, s, 5)
	tok, err := decodeToken(tokb)
	if err != nil {
		t.Fatal(err)
	}
	// Do by hand what a crashed Commit did: the first file linked in place.
	first := tok.Files[0]
	final := filepath.Join(out, filepath.FromSlash(first.Final))
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.staging, first.Staged), final); err != nil {
		t.Fatal(err)
	}
	s2 := h.newSink(t, out, data, pipeline.ExactlyOnce)
	if err := s2.Recover(context.Background(), tokb); err != nil {
		t.Fatal(err)
	}
	if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 6)) {
		t.Errorf("visible %v, want 0..5", got)
	}
	if staged := listFiles(t, s2.staging); len(staged) != 0 {
		t.Errorf("staged left: %v", staged)
	}
}

// Commit never replaces a file it did not write (a wiped data_dir
// restarting checkpoint ids at 1, another writer with the same prefix).
func TestColumnarCommitRefusesToOverwrite(t *testing.T) {
	h := commitHarnesses[0]
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	s := h.newSink(t, out, filepath.Join(dir, "data"), pipeline.ExactlyOnce)
	mustWrite(t, s, numbered(0, 1)...)
	tokb := mustPreCommit(t, s, 1)
	tok, _ := decodeToken(tokb)
	final := filepath.Join(out, filepath.FromSlash(tok.Files[0].Final))
	os.MkdirAll(filepath.Dir(final), 0o755)
	if err := os.WriteFile(final, []byte("somebody else's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := s.Commit(context.Background(), tokb)
	if err == nil || !strings.Contains(err.Error(), "not written by this commit") && !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("Commit over a foreign file: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(final); string(b) != "somebody else's data" {
		t.Errorf("the foreign file was replaced")
	}
	if _, err := os.Stat(filepath.Join(s.staging, tok.Files[0].Staged)); err != nil {
		t.Errorf("staged part lost after a refused commit: %v", err)
	}
}

func TestColumnarCommitMissingBothIsAnError(t *testing.T) {
	h := commitHarnesses[0]
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	s := h.newSink(t, out, filepath.Join(dir, "data"), pipeline.ExactlyOnce)
	mustWrite(t, s, numbered(0, 1)...)
	tokb := mustPreCommit(t, s, 1)
	tok, _ := decodeToken(tokb)
	os.Remove(filepath.Join(s.staging, tok.Files[0].Staged))
	if err := s.Commit(context.Background(), tokb); err == nil || !strings.Contains(err.Error(), "both missing") {
		t.Errorf("Commit with the part gone: %v, want an error saying it is lost", err)
	}
}

func TestColumnarTokenValidation(t *testing.T) {
	h := commitHarnesses[0]
	dir := t.TempDir()
	s := h.newSink(t, filepath.Join(dir, "out"), filepath.Join(dir, "data"), pipeline.ExactlyOnce)
	for _, tok := range []string{
		`not json`,
		`{"v":2,"sink":"p/sinks[0]/columnar","files":[]}`,
		`{"v":1,"sink":"p/sinks[0]/columnar","files":[{"staged":"x","final":"../escape.parquet"}]}`,
		`{"v":1,"sink":"p/sinks[0]/columnar","files":[{"staged":"x","final":"/abs.parquet"}]}`,
		`{"v":1,"sink":"p/sinks[0]/columnar","files":[{"staged":"../x","final":"a.parquet"}]}`,
		`{"v":1,"sink":"p/sinks[1]/columnar","files":[]}`,
	} {
		if err := s.Commit(context.Background(), []byte(tok)); err == nil {
			t.Errorf("Commit(%s) succeeded", tok)
		}
		if err := s.Recover(context.Background(), []byte(tok)); err == nil {
			t.Errorf("Recover(%s) succeeded", tok)
		}
	}
}

// Staging on another file system than the output: the part is copied in
// under a hidden name, then linked into place.
func TestColumnarCommitAcrossFileSystems(t *testing.T) {
	shm := "/dev/shm"
	var a, b syscall.Stat_t
	tmp := t.TempDir()
	if syscall.Stat(shm, &a) != nil || syscall.Stat(tmp, &b) != nil || a.Dev == b.Dev {
		t.Skip("no second file system (/dev/shm) to stage on")
	}
	data, err := os.MkdirTemp(shm, "weir-columnar-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	h := commitHarnesses[0]
	out := filepath.Join(tmp, "out")
	s := h.newSink(t, out, data, pipeline.ExactlyOnce)
	mustWrite(t, s, numbered(0, 10)...)
	tok := mustPreCommit(t, s, 1)
	mustCommit(t, s, tok)
	mustCommit(t, s, tok)
	if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 10)) {
		t.Errorf("visible %v, want 0..9", got)
	}
	if files := listFiles(t, out); len(files) != 2 {
		t.Errorf("output %v, want two parts and no temporary files", files)
	}
	if staged := listFiles(t, s.staging); len(staged) != 0 {
		t.Errorf("staged left: %v", staged)
	}
}

func TestColumnarAtLeastOnceInProgressNames(t *testing.T) {
	for _, h := range commitHarnesses {
		t.Run(h.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			s := h.newSink(t, out, filepath.Join(dir, "data"), pipeline.AtLeastOnce)
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Error("at_least_once created a staging directory")
			}
			mustWrite(t, s, numbered(0, 10)...)
			files := listFiles(t, out)
			if len(files) != 2 || len(visibleFiles(t, out)) != 0 {
				t.Fatalf("while writing: %v, want two hidden in-progress parts", files)
			}
			for _, f := range files {
				if !strings.HasSuffix(f, ".inprogress") {
					t.Errorf("in-progress part %s has no .inprogress suffix", f)
				}
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 10)) {
				t.Errorf("after Flush: visible %v, want 0..9", got)
			}
			if len(listFiles(t, out)) != 2 {
				t.Errorf("after Flush: %v, want only the two published parts", listFiles(t, out))
			}
			mustWrite(t, s, numbered(10, 12)...)
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 12)) {
				t.Errorf("after Close: visible %v, want 0..11", got)
			}
			for _, f := range listFiles(t, out) {
				if strings.Contains(f, ".inprogress") {
					t.Errorf("in-progress file left after Close: %s", f)
				}
			}
		})
	}
}

// Close under exactly_once keeps pre-committed parts for Commit and
// discards the rest.
func TestColumnarCloseKeepsPreCommitted(t *testing.T) {
	h := commitHarnesses[1]
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	s := h.newSink(t, out, data, pipeline.ExactlyOnce)
	mustWrite(t, s, numbered(0, 4)...)
	tok := mustPreCommit(t, s, 9)
	mustWrite(t, s, numbered(4, 8)...)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(listFiles(t, s.staging)); n != 2 {
		t.Errorf("%d staged files after Close, want the 2 pre-committed", n)
	}
	s2 := h.newSink(t, out, data, pipeline.ExactlyOnce)
	if err := s2.Recover(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if got := h.committedNumbers(t, out); !reflect.DeepEqual(got, seq(0, 4)) {
		t.Errorf("visible %v, want 0..3", got)
	}
	if err := s2.Write(context.Background(), batch(numbered(0, 1)...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), batch(numbered(0, 1)...)); err == nil {
		t.Error("Write after Close succeeded")
	}
}

// An empty checkpoint gives a token with no files; committing it is a
// no-op.
func TestColumnarEmptyCheckpoint(t *testing.T) {
	h := commitHarnesses[0]
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	s := h.newSink(t, out, filepath.Join(dir, "data"), pipeline.ExactlyOnce)
	tok := mustPreCommit(t, s, 1)
	if !bytes.Contains(tok, []byte(`"files":[]`)) {
		t.Errorf("empty token %s", tok)
	}
	mustCommit(t, s, tok)
	if files := listFiles(t, out); len(files) != 0 {
		t.Errorf("files after an empty checkpoint: %v", files)
	}
}

// Part names hold the checkpoint id and a hash of the component id, which
// starts with the pipeline's name: sinks of two pipelines with the same
// sink id and the same checkpoint ids, in one directory with one file
// stem (out and out/part.<ext> are different paths to validate, and one
// process holds one output lock), name their parts apart, and every
// record of both is committed.
func TestColumnarPartNamesDifferBetweenPipelines(t *testing.T) {
	for _, h := range commitHarnesses {
		t.Run(h.name, func(t *testing.T) {
			out := t.TempDir()
			var sinks []*ColumnarSink
			for i, p := range []string{"a", "b"} {
				b := testBuild(t.TempDir(), pipeline.ExactlyOnce)
				b.Pipeline, b.Component = p, p+"/sinks[0]/"+h.name
				path := out
				if i == 1 {
					path = filepath.Join(out, "part."+h.name)
				}
				sinks = append(sinks, h.newSinkWith(t, path, b))
			}
			names := map[string]string{}
			for ckpt := uint64(1); ckpt <= 3; ckpt++ {
				for i, s := range sinks {
					from := int(ckpt-1)*20 + i*10
					mustWrite(t, s, numbered(from, from+10)...)
					mustCommit(t, s, mustPreCommit(t, s, ckpt))
				}
			}
			for _, f := range visibleFiles(t, out) {
				for i, s := range sinks {
					if strings.HasSuffix(f, "-"+s.sinkID+"."+h.name) {
						names[f] = []string{"a", "b"}[i]
					}
				}
			}
			if got := len(visibleFiles(t, out)); got != 12 || len(names) != 12 {
				t.Fatalf("%d visible parts, %d named after a sink; want 12 (3 checkpoints × 2 partitions × 2 sinks): %v", got, len(names), visibleFiles(t, out))
			}
			if sinks[0].sinkID == sinks[1].sinkID {
				t.Fatalf("both sinks have id %s", sinks[0].sinkID)
			}
			if got, want := h.committedNumbers(t, out), seq(0, 60); !slices.Equal(got, want) {
				t.Fatalf("committed %v, want 0..59 once each", got)
			}
			for _, s := range sinks {
				if err := s.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
