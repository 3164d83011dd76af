package sinks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// taskRecords are numbered records of one task.
func taskRecords(task string, from, to int) *pipeline.Batch {
	b := &pipeline.Batch{}
	for _, r := range numbered(from, to) {
		r.Split = task
		b.Records = append(b.Records, r)
	}
	return b
}

// publishedNumbers reads the parts readers see: everything outside _weir.
func (h commitHarness) publishedNumbers(t *testing.T, out string) []int64 {
	t.Helper()
	var ns []int64
	for _, f := range visibleFiles(t, out) {
		if strings.HasPrefix(f, "_weir/") {
			continue
		}
		for _, r := range h.read(t, filepath.Join(out, f)) {
			ns = append(ns, r["n"].(int64))
		}
	}
	slices.Sort(ns)
	return ns
}

// Parquet and Arrow sinks keep tasks on the shared output directory: a
// claim returns the truth the last commit left, a claim in a later
// generation fences the previous owner (its commit publishes nothing), and
// a commit whose owner died after writing its manifest entry is finished
// by the next claim.
func TestColumnarTasksFenceAndFinish(t *testing.T) {
	for _, h := range commitHarnesses {
		t.Run(h.name, func(t *testing.T) {
			ctx := context.Background()
			out, root := t.TempDir(), t.TempDir()
			newSink := func(proc string) *ColumnarSink {
				b := testBuild(filepath.Join(root, proc), pipeline.ExactlyOnce)
				b.KeepTasks = true
				s := h.newSinkWith(t, out, b)
				if err := s.Recover(ctx, nil); err != nil {
					t.Fatal(err)
				}
				return s
			}
			a := newSink("a")
			c, err := a.ClaimTask(ctx, "logs/0", gen(3), "a")
			if err != nil || c.Found {
				t.Fatalf("first claim: %+v, %v", c, err)
			}
			if err := a.Write(ctx, taskRecords("logs/0", 0, 10)); err != nil {
				t.Fatal(err)
			}
			tok, err := a.PreCommitTasks(ctx, 1, []pipeline.TaskState{{Task: "logs/0", Offset: 100, States: map[string][]byte{"w": []byte("s1")}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Commit(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if got := h.publishedNumbers(t, out); !slices.Equal(got, seq(0, 10)) {
				t.Fatalf("after a's commit: %v", got)
			}

			b := newSink("b")
			c, err = b.ClaimTask(ctx, "logs/0", gen(4), "b")
			if err != nil || !c.Found || c.Offset != 100 || string(c.States["w"]) != "s1" {
				t.Fatalf("claim in generation 4: %+v, %v", c, err)
			}
			// a is a zombie now: its commit publishes nothing.
			if err := a.Write(ctx, taskRecords("logs/0", 10, 20)); err != nil {
				t.Fatal(err)
			}
			tok, err = a.PreCommitTasks(ctx, 2, []pipeline.TaskState{{Task: "logs/0", Offset: 150}})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Commit(ctx, tok); !errors.Is(err, pipeline.ErrFenced) {
				t.Fatalf("zombie commit: %v, want ErrFenced", err)
			}
			if _, err := a.ClaimTask(ctx, "logs/0", gen(3), "a"); !errors.Is(err, pipeline.ErrFenced) {
				t.Fatalf("zombie claim: %v, want ErrFenced", err)
			}
			if got := h.publishedNumbers(t, out); !slices.Equal(got, seq(0, 10)) {
				t.Fatalf("after the zombie's commit: %v", got)
			}
			// b commits from the truth it claimed.
			if err := b.Write(ctx, taskRecords("logs/0", 10, 15)); err != nil {
				t.Fatal(err)
			}
			tok, err = b.PreCommitTasks(ctx, 1, []pipeline.TaskState{{Task: "logs/0", Offset: 120}})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(ctx, tok); err != nil {
				t.Fatal(err)
			}
			// b writes its next entry, then dies before placing its parts.
			if err := b.Write(ctx, taskRecords("logs/0", 15, 20)); err != nil {
				t.Fatal(err)
			}
			tok, err = b.PreCommitTasks(ctx, 2, []pipeline.TaskState{{Task: "logs/0", Offset: 130}})
			if err != nil {
				t.Fatal(err)
			}
			dt, err := decodeToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := b.publishEntry(&dt.Tasks[0]); !ok || err != nil {
				t.Fatalf("publish entry: %v %v", ok, err)
			}
			if got := h.publishedNumbers(t, out); !slices.Equal(got, seq(0, 15)) {
				t.Fatalf("entry written, parts not placed: %v", got)
			}
			// The next owner's claim finishes the publication.
			cs := newSink("c")
			c, err = cs.ClaimTask(ctx, "logs/0", gen(5), "c")
			if err != nil || c.Offset != 130 {
				t.Fatalf("claim in generation 5: %+v, %v", c, err)
			}
			if got := h.publishedNumbers(t, out); !slices.Equal(got, seq(0, 20)) {
				t.Fatalf("after the next claim: %v", got)
			}
		})
	}
}

// A manifest entry that weir did not write, or that is damaged, is refused
// with its path and the reason.
func TestColumnarTasksRefusesCorruptManifests(t *testing.T) {
	ctx := context.Background()
	h := commitHarnesses[0]
	out := t.TempDir()
	b := testBuild(t.TempDir(), pipeline.ExactlyOnce)
	b.KeepTasks = true
	s := h.newSinkWith(t, out, b)
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	dir := s.tasks.dir("logs/0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{"not json", "is not a weir manifest entry"},
		{`{"task":"logs/0","seq":7,"staged_dir":"x"}`, "is corrupt"},
		{`{"task":"logs/0","seq":1,"staged_dir":"../../etc"}`, "is corrupt"},
	} {
		name := filepath.Join(dir, entryName(1))
		if err := os.WriteFile(name, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := s.ClaimTask(ctx, "logs/0", gen(1), "a")
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("manifest %q: claim gave %v; want %q naming %s", c.body, err, c.want, name)
		}
	}
}
