package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/weirhq/weir/internal/durable"
	"github.com/weirhq/weir/pipeline"
)

// Parquet and Arrow sinks keep task truths (pipeline.TaskStore) on the
// output directory itself, which the processes of a scale-out group share
// (a network file system, or one machine's disk):
//
//	<path>/_weir/<sink>/staging/<instance>/...      staged parts of one process
//	<path>/_weir/<sink>/tasks/<task>/claim.json     the latest claim's generation
//	<path>/_weir/<sink>/tasks/<task>/<seq>.json     the task's manifest, one entry per commit
//
// A manifest entry says: the task's next offset and state after the
// commit, the generation and owner that made it, and the parts it
// published. Entries are numbered 1, 2, 3...; an entry is created with
// link-no-replace, so exactly one process can ever write entry n: that is
// the compare-and-set that makes a task's history linear. A process that
// loses the race for entry n (a zombie, or an owner that restarted) is
// refused with pipeline.ErrFenced and starts over from the truth; its
// staged parts are never published. A claim records its generation in
// claim.json, and a commit of an earlier generation is refused before it
// tries.
//
// A commit writes the entry first, then places its parts under their final
// names (idempotent); whoever finds an entry whose parts are not all in
// place (its owner restarting, or the task's next owner claiming it)
// finishes placing them. Part names hold the task and the entry number, so
// a part is never published twice and no two processes name one alike.
// Readers that glob *.parquet see only published parts; the _weir folder
// holds no parquet files.

// columnarTaskEntry is one manifest entry, and its form in commit tokens.
type columnarTaskEntry struct {
	Task       string            `json:"task"`
	Seq        int64             `json:"seq"`
	Base       int64             `json:"base"`
	Offset     int64             `json:"offset"`
	Generation int64             `json:"generation"`
	Owner      string            `json:"owner"`
	Checkpoint uint64            `json:"checkpoint"`
	StagedDir  string            `json:"staged_dir"` // slash path under the output directory
	Files      []tokenFile       `json:"files"`
	States     map[string][]byte `json:"states,omitempty"`
}

// columnarTasks is a sink's task state.
type columnarTasks struct {
	root      string // <outDir>/_weir/<sinkID>
	stagedDir string // this process's staging directory, relative to outDir

	mu     sync.Mutex // guards claims: ClaimTask runs on the source's goroutine
	claims map[string]columnarClaim
}

type columnarClaim struct {
	generation int64
	owner      string
	seq        int64 // the next entry to write
	base       int64 // the offset of the last entry
}

// KeepsTasks implements pipeline.TaskStoreConfig.
func (c *ParquetConfig) KeepsTasks(g pipeline.Guarantee) bool { return g == pipeline.ExactlyOnce }

// KeepsTasks implements pipeline.TaskStoreConfig; not when streaming to
// stdout.
func (c *ArrowConfig) KeepsTasks(g pipeline.Guarantee) bool {
	return g == pipeline.ExactlyOnce && c.Path != "-"
}

// setUpTasks moves staging under the output directory, where other
// processes can finish a commit.
func (s *ColumnarSink) setUpTasks() error {
	instance, err := durable.ReadOrCreateID(filepath.Join(s.b.Dir, "instance-id"), "")
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	rel := path.Join("_weir", s.sinkID, "staging", instance)
	s.tasks = &columnarTasks{root: filepath.Join(s.outDir, "_weir", s.sinkID), stagedDir: rel, claims: map[string]columnarClaim{}}
	s.staging = filepath.Join(s.outDir, filepath.FromSlash(rel))
	if err := mkdirAllSync(s.staging); err != nil {
		return fmt.Errorf("%s: create staging directory: %w", s.name, err)
	}
	return nil
}

func (t *columnarTasks) dir(task string) string {
	return filepath.Join(t.root, "tasks", url.PathEscape(task))
}

func entryName(seq int64) string { return fmt.Sprintf("%020d.json", seq) }

// latest returns the task's newest manifest entry (nil when none).
func (t *columnarTasks) latest(task string) (*columnarTaskEntry, error) {
	dir := t.dir(task)
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var last string
	for _, e := range names {
		n := e.Name()
		if len(n) == 25 && strings.HasSuffix(n, ".json") && n > last {
			if _, err := strconv.ParseUint(n[:20], 10, 63); err == nil {
				last = n
			}
		}
	}
	if last == "" {
		return nil, nil
	}
	return readEntry(filepath.Join(dir, last))
}

func readEntry(name string) (*columnarTaskEntry, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var e columnarTaskEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("task manifest %s is not a weir manifest entry (%w); was it written by another program or version?", name, err)
	}
	want := fmt.Sprintf("%020d.json", e.Seq)
	if filepath.Base(name) != want || e.Task == "" || !filepath.IsLocal(filepath.FromSlash(e.StagedDir)) {
		return nil, fmt.Errorf("task manifest %s is corrupt: it names entry %d of task %q", name, e.Seq, e.Task)
	}
	for _, f := range e.Files {
		if f.Staged == "" || strings.ContainsAny(f.Staged, `/\`) || !filepath.IsLocal(filepath.FromSlash(f.Final)) {
			return nil, fmt.Errorf("task manifest %s is corrupt: file %q → %q", name, f.Staged, f.Final)
		}
	}
	return &e, nil
}

type columnarClaimFile struct {
	Generation int64  `json:"generation"`
	Owner      string `json:"owner"`
}

func (t *columnarTasks) claimed(task string) (columnarClaimFile, error) {
	var c columnarClaimFile
	b, err := os.ReadFile(filepath.Join(t.dir(task), "claim.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return columnarClaimFile{Generation: -1}, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return c, fmt.Errorf("task claim %s: %w", filepath.Join(t.dir(task), "claim.json"), err)
	}
	return c, nil
}

// ClaimTask implements pipeline.TaskStore.
func (s *ColumnarSink) ClaimTask(_ context.Context, task string, f pipeline.Fence, owner string) (pipeline.Claim, error) {
	gen := f.Generation
	t := s.tasks
	if t == nil {
		return pipeline.Claim{}, fmt.Errorf("%s: this sink does not keep tasks", s.name)
	}
	dir := t.dir(task)
	if err := mkdirAllSync(dir); err != nil {
		return pipeline.Claim{}, fmt.Errorf("%s: %w", s.name, err)
	}
	cur, err := t.claimed(task)
	if err != nil {
		return pipeline.Claim{}, fmt.Errorf("%s: %w", s.name, err)
	}
	if cur.Generation > gen {
		return pipeline.Claim{}, fmt.Errorf("%s: task %s is claimed in generation %d (this process is in %d): %w", s.name, task, cur.Generation, gen, pipeline.ErrFenced)
	}
	b, _ := json.Marshal(columnarClaimFile{Generation: gen, Owner: owner})
	if err := writeFileAtomic(filepath.Join(dir, "claim.json"), b); err != nil {
		return pipeline.Claim{}, fmt.Errorf("%s: claim task %s: %w", s.name, task, err)
	}
	e, err := t.latest(task)
	if err != nil {
		return pipeline.Claim{}, fmt.Errorf("%s: %w", s.name, err)
	}
	c := columnarClaim{generation: gen, owner: owner, seq: 1, base: -1}
	claim := pipeline.Claim{Generation: gen, TaskState: pipeline.TaskState{Task: task, Offset: -1}}
	if e != nil {
		// Finish its publication: its owner may have died in the middle.
		if err := s.place(e); err != nil {
			return pipeline.Claim{}, fmt.Errorf("%s: task %s: finish entry %d: %w", s.name, task, e.Seq, err)
		}
		c.seq, c.base = e.Seq+1, e.Offset
		claim.Found, claim.Offset, claim.States = true, e.Offset, e.States
	}
	t.mu.Lock()
	t.claims[task] = c
	t.mu.Unlock()
	return claim, nil
}

// writeFileAtomic writes name through a temporary file, fsync and rename.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp-" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(name))
}

// groupTasks splits records by partition and task, keeping their order
// within each; a group's key is "<partition>\x00<task>".
func (s *ColumnarSink) groupTasks(recs []*pipeline.Record) ([]recordGroup, error) {
	clear(s.groupIdx)
	groups := s.groups[:cap(s.groups)]
	n := 0
	for _, r := range recs {
		s.groupBuf = s.groupBuf[:0]
		if s.tmpl != nil {
			var err error
			s.groupBuf, err = s.tmpl.RenderPath(s.groupBuf, r)
			if err != nil {
				return nil, fmt.Errorf("%s: partition_by %q: record from %s offset %d: %w", s.name, s.tmpl.Source, r.Origin.Name, r.Origin.Offset, err)
			}
		}
		s.groupBuf = append(append(s.groupBuf, 0), r.Split...)
		i, ok := s.groupIdx[string(s.groupBuf)] // no allocation for the lookup
		if !ok {
			key := string(s.groupBuf)
			i = n
			n++
			s.groupIdx[key] = i
			if i < len(groups) {
				groups[i].key, groups[i].recs = key, groups[i].recs[:0]
			} else {
				groups = append(groups, recordGroup{key: key})
			}
		}
		groups[i].recs = append(groups[i].recs, r)
	}
	s.groups = groups[:n]
	return s.groups, nil
}

// splitTaskKey splits a part key of a task sink into partition and task.
func splitTaskKey(key string) (partition, task string) {
	partition, task, _ = strings.Cut(key, "\x00")
	return partition, task
}

// PreCommitTasks implements pipeline.TaskStore: every open part is closed,
// and the token holds one manifest entry per task that moved (new parts,
// or a new offset).
func (s *ColumnarSink) PreCommitTasks(_ context.Context, checkpoint uint64, tasks []pipeline.TaskState) ([]byte, error) {
	t := s.tasks
	if t == nil {
		return nil, fmt.Errorf("%s: this sink does not keep tasks", s.name)
	}
	if s.failed != nil {
		return nil, s.failed
	}
	if err := s.rollAll(); err != nil {
		return nil, s.fail(err)
	}
	if len(s.rolled) > 0 {
		if err := syncDir(s.staging); err != nil {
			return nil, s.fail(fmt.Errorf("%s: %w", s.name, err))
		}
	}
	files := map[string][]rolledPart{}
	for _, rp := range s.rolled {
		_, task := splitTaskKey(rp.key)
		files[task] = append(files[task], rp)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var entries []columnarTaskEntry
	for _, ts := range tasks {
		c, ok := t.claims[ts.Task]
		if !ok {
			return nil, fmt.Errorf("%s: task %s was never claimed by this process", s.name, ts.Task)
		}
		parts := files[ts.Task]
		delete(files, ts.Task)
		if len(parts) == 0 && ts.Offset == c.base {
			continue // nothing moved
		}
		e := columnarTaskEntry{Task: ts.Task, Seq: c.seq, Base: c.base, Offset: ts.Offset, Generation: c.generation,
			Owner: c.owner, Checkpoint: checkpoint, StagedDir: t.stagedDir, States: ts.States, Files: []tokenFile{}}
		for i, rp := range parts {
			partition, _ := splitTaskKey(rp.key)
			rp.file.Final = path.Join(partition, fmt.Sprintf("%s-%s-%010d-%04d-%s.%s", s.stem,
				url.PathEscape(strings.ReplaceAll(ts.Task, "/", "-")), c.seq, i, s.sinkID, s.format.ext()))
			e.Files = append(e.Files, rp.file)
		}
		c.seq, c.base = c.seq+1, ts.Offset
		t.claims[ts.Task] = c
		entries = append(entries, e)
	}
	if len(files) > 0 {
		return nil, fmt.Errorf("%s: parts of tasks %v that the checkpoint does not hold", s.name, slices.Sorted(maps.Keys(files)))
	}
	s.rolled = s.rolled[:0]
	s.lastCkpt = checkpoint
	tok := columnarToken{Version: tokenVersion, Sink: s.b.Component, Checkpoint: checkpoint, Files: []tokenFile{}, Tasks: entries}
	if st := s.schema.cur.Load(); st != nil && !s.declared {
		tok.Schema = st.schema.String()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tok); err != nil {
		return nil, fmt.Errorf("%s: encode token: %w", s.name, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// commitTasks publishes a token's manifest entries, then their parts. An
// entry that another process wrote first, or a task claimed by a later
// generation, fences this commit: its parts are never published, and
// the others still are (each task's history is its own).
func (s *ColumnarSink) commitTasks(tok *columnarToken) error {
	var fenced []string
	for i := range tok.Tasks {
		e := &tok.Tasks[i]
		ok, err := s.publishEntry(e)
		if err != nil {
			return err
		}
		if !ok {
			fenced = append(fenced, e.Task)
			for _, f := range e.Files {
				os.Remove(filepath.Join(s.outDir, filepath.FromSlash(e.StagedDir), f.Staged))
			}
			continue
		}
		if err := s.place(e); err != nil {
			return fmt.Errorf("task %s entry %d: %w", e.Task, e.Seq, err)
		}
	}
	if len(fenced) > 0 {
		return fmt.Errorf("tasks %v: %w", fenced, pipeline.ErrFenced)
	}
	return nil
}

// publishEntry creates the manifest entry with link-no-replace. It reports
// false when the task belongs to a later generation, or another entry
// holds the number (true when it is this one, committed before).
func (s *ColumnarSink) publishEntry(e *columnarTaskEntry) (bool, error) {
	t := s.tasks
	dir := t.dir(e.Task)
	if err := mkdirAllSync(dir); err != nil {
		return false, err
	}
	cur, err := t.claimed(e.Task)
	if err != nil {
		return false, err
	}
	name := filepath.Join(dir, entryName(e.Seq))
	if cur.Generation > e.Generation {
		// Committed before the claim? Then it is ours and in place.
		if old, err := readEntry(name); err == nil && sameEntry(old, e) {
			return true, nil
		}
		return false, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%s.tmp", entryName(e.Seq), e.Owner))
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return false, err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return false, err
	}
	err = placeNoReplace(tmp, name)
	os.Remove(tmp)
	switch {
	case errors.Is(err, fs.ErrExist):
		old, rerr := readEntry(name)
		if rerr != nil {
			return false, rerr
		}
		return sameEntry(old, e), nil
	case err != nil:
		return false, err
	}
	return true, syncDir(dir)
}

// sameEntry reports whether two entries are the same commit.
func sameEntry(a, b *columnarTaskEntry) bool {
	return a.Owner == b.Owner && a.Generation == b.Generation && a.Checkpoint == b.Checkpoint &&
		a.StagedDir == b.StagedDir && a.Offset == b.Offset && slices.Equal(a.Files, b.Files)
}

// place puts an entry's parts under their final names (idempotent).
func (s *ColumnarSink) place(e *columnarTaskEntry) error {
	return s.publish(context.Background(), filepath.Join(s.outDir, filepath.FromSlash(e.StagedDir)), e.Files)
}
