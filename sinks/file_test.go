package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
)

func newFileSink(t *testing.T, dir string, g pipeline.Guarantee, path string, mutate func(*FileConfig)) *FileSink {
	t.Helper()
	tpl, err := pipeline.CompileTemplate(path, pipeline.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &FileConfig{Path: tpl, MaxOpenFiles: 64, BufferBytes: 4096}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := cfg.NewSink(pipeline.Build{Guarantee: g, Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	return s.(*FileSink)
}

func batchOf(from, to int) *pipeline.Batch {
	b := &pipeline.Batch{}
	for i := from; i < to; i++ {
		r := &pipeline.Record{}
		r.SetFields().Set("i", int64(i))
		r.Fields().Set("day", fmt.Sprintf("d%d", i%2))
		b.Records = append(b.Records, r)
	}
	return b
}

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "{\"i\":%d,\"day\":\"d%d\"}\n", i, i%2)
	}
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileSinkTwoPhaseCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	s := newFileSink(t, dir, pipeline.ExactlyOnce, out, nil)
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batchOf(0, 10)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != "" {
		t.Fatalf("visible before commit: %q", got)
	}
	tok1, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != "" {
		t.Fatalf("visible after pre-commit: %q", got)
	}
	if err := s.Write(ctx, batchOf(10, 20)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second commit of the same token changes nothing
		if err := s.Commit(ctx, tok1); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, out); got != lines(0, 10) {
			t.Fatalf("after commit:\n%s", got)
		}
	}
	tok2, err := s.PreCommit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batchOf(20, 30)); err != nil { // never pre-committed: lost in the "crash"
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx) // crash: checkpoint 2 was written, its commit never ran

	// Recovery re-commits checkpoint 2 and discards what came after it.
	r := newFileSink(t, dir, pipeline.ExactlyOnce, out, nil)
	if err := r.Recover(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != lines(0, 20) {
		t.Fatalf("after recovery:\n%s", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "state/staging/*")); len(left) != 0 {
		t.Fatalf("staging not cleaned: %v", left)
	}
	// Recovering the same token again (a crash during recovery) is a no-op.
	if err := newFileSink(t, dir, pipeline.ExactlyOnce, out, nil).Recover(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != lines(0, 20) {
		t.Fatalf("after second recovery:\n%s", got)
	}
	// Writing on continues at the committed end.
	if err := r.Write(ctx, batchOf(20, 25)); err != nil {
		t.Fatal(err)
	}
	tok3, _ := r.PreCommit(ctx, 3)
	if err := r.Commit(ctx, tok3); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != lines(0, 25) {
		t.Fatalf("after more commits:\n%s", got)
	}
}

// A commit that died half-way (the final file holds part of the staged
// bytes) is completed, not doubled.
func TestFileSinkCommitCompletesTornAppend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	s := newFileSink(t, dir, pipeline.ExactlyOnce, out, nil)
	_ = s.Recover(ctx, nil)
	_ = s.Write(ctx, batchOf(0, 50))
	tok, _ := s.PreCommit(ctx, 1)
	if err := os.WriteFile(out, []byte(lines(0, 50)[:333]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != lines(0, 50) {
		t.Fatalf("got %d bytes, want %d", len(got), len(lines(0, 50)))
	}
}

func TestFileSinkRefusesAFileChangedOutsideWeir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	s := newFileSink(t, dir, pipeline.ExactlyOnce, out, nil)
	_ = s.Recover(ctx, nil)
	_ = s.Write(ctx, batchOf(0, 5))
	tok, _ := s.PreCommit(ctx, 1)
	_ = s.Commit(ctx, tok)
	_ = s.Write(ctx, batchOf(5, 10))
	tok2, _ := s.PreCommit(ctx, 2)
	os.Truncate(out, 3)
	err := s.Commit(ctx, tok2)
	if err == nil || !strings.Contains(err.Error(), "changed outside weir") {
		t.Fatalf("got %v", err)
	}
}

func TestFileSinkRollsBySizeAndSpreadsByTemplate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newFileSink(t, dir, pipeline.ExactlyOnce, filepath.Join(dir, "{{ day }}/x.jsonl"), func(c *FileConfig) { c.MaxBytes = 100 })
	_ = s.Recover(ctx, nil)
	if err := s.Write(ctx, batchOf(0, 40)); err != nil {
		t.Fatal(err)
	}
	tok, _ := s.PreCommit(ctx, 1)
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for _, day := range []string{"d0", "d1"} {
		parts, _ := filepath.Glob(filepath.Join(dir, day, "x-*.jsonl"))
		if len(parts) < 3 {
			t.Fatalf("%s: want several parts, got %v", day, parts)
		}
		var all string
		for _, p := range parts {
			c := readFile(t, p)
			if len(c) > 100+20 {
				t.Errorf("%s is %d bytes, limit 100 (+ one line)", p, len(c))
			}
			all += c
		}
		var want strings.Builder
		for i := 0; i < 40; i++ {
			if fmt.Sprintf("d%d", i%2) == day {
				want.WriteString(lines(i, i+1))
			}
		}
		if all != want.String() {
			t.Errorf("%s parts hold:\n%s\nwant:\n%s", day, all, want.String())
		}
	}
}

func TestFileSinkAtLeastOnceWritesDirectly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	s := newFileSink(t, dir, pipeline.AtLeastOnce, out, nil)
	_ = s.Write(ctx, batchOf(0, 3))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != lines(0, 3) {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "state/staging")); !os.IsNotExist(err) {
		t.Fatalf("at_least_once created a staging dir: %v", err)
	}
	_ = s.Close(ctx)
}

func TestFileSinkRollsByAge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newFileSink(t, dir, pipeline.AtLeastOnce, filepath.Join(dir, "x.jsonl"), func(c *FileConfig) { c.MaxAge = time.Minute })
	s.now = func() time.Time { return now }
	_ = s.Write(ctx, batchOf(0, 2))
	now = now.Add(2 * time.Minute)
	_ = s.Write(ctx, batchOf(2, 4))
	_ = s.Close(ctx)
	if a, b := readFile(t, filepath.Join(dir, "x-000001.jsonl")), readFile(t, filepath.Join(dir, "x-000002.jsonl")); a != lines(0, 2) || b != lines(2, 4) {
		t.Fatalf("parts: %q / %q", a, b)
	}
}

func BenchmarkFileSinkWrite(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	tpl, _ := pipeline.CompileTemplate(filepath.Join(dir, "out.jsonl"), pipeline.Pos{})
	cfg := &FileConfig{Path: tpl, MaxOpenFiles: 8, BufferBytes: 256 << 10}
	sk, _ := cfg.NewSink(pipeline.Build{Guarantee: pipeline.ExactlyOnce, Dir: filepath.Join(dir, "state")})
	s := sk.(*FileSink)
	_ = s.Recover(ctx, nil)
	line := []byte(`{"ts":"2026-01-01T00:00:00.000Z","level":"error","service":"api-gateway","msg":"payment authorization declined by provider","latency_ms":12.64,"status":500}`)
	batch := &pipeline.Batch{}
	for range 1024 {
		r := &pipeline.Record{Value: line}
		_ = r.SetFields().ParseJSONObject(line)
		r.Set("alert", true)
		batch.Records = append(batch.Records, r)
	}
	b.SetBytes(int64(len(line)+15) * 1024)
	for i := 0; b.Loop(); i++ {
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
		if i%100 == 99 {
			tok, _ := s.PreCommit(ctx, uint64(i))
			_ = s.Commit(ctx, tok)
		}
	}
	b.ReportMetric(float64(b.N*1024)/b.Elapsed().Seconds(), "records/s")
}

// keyedBatch is records i = from..to-1 with k = i % keys.
func keyedBatch(from, to, keys int) *pipeline.Batch {
	b := &pipeline.Batch{}
	for i := from; i < to; i++ {
		r := &pipeline.Record{}
		r.SetFields().Set("i", int64(i))
		r.Fields().Set("k", int64(i%keys))
		b.Records = append(b.Records, r)
	}
	return b
}

func keyedLines(k, keys, to int) string {
	var b strings.Builder
	for i := k; i < to; i += keys {
		fmt.Fprintf(&b, "{\"i\":%d,\"k\":%d}\n", i, k)
	}
	return b.String()
}

// The runtime writes the records after a barrier before the checkpoint's
// commit lands. With more files than max_open_files, those writes close
// and reopen files whose parts are pre-committed but not yet committed:
// their bytes must still go after those parts, each record exactly once.
func TestFileSinkReopensClosedFilesBeforeTheirCommitLands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const keys, per = 10, 200
	s := newFileSink(t, dir, pipeline.ExactlyOnce, filepath.Join(dir, "out/k{{ k }}.jsonl"), func(c *FileConfig) { c.MaxOpenFiles = 2 })
	if err := s.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, keyedBatch(0, per, keys)); err != nil {
		t.Fatal(err)
	}
	n := per
	for c := range 6 {
		tok, err := s.PreCommit(ctx, uint64(c+1))
		if err != nil {
			t.Fatal(err)
		}
		var parsed fileToken
		if err := json.Unmarshal(tok, &parsed); err != nil {
			t.Fatal(err)
		}
		if len(parsed.Parts) != keys {
			t.Errorf("checkpoint %d: %d staged parts, want one per file (%d)", c+1, len(parsed.Parts), keys)
		}
		if err := s.Write(ctx, keyedBatch(n, n+per, keys)); err != nil { // before the commit lands
			t.Fatal(err)
		}
		n += per
		if err := s.Commit(ctx, tok); err != nil {
			t.Errorf("commit %d: %v", c+1, err)
		}
	}
	tok, err := s.PreCommit(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if got, want := readFile(t, filepath.Join(dir, fmt.Sprintf("out/k%d.jsonl", k))), keyedLines(k, keys, n); got != want {
			t.Errorf("k%d.jsonl holds %d lines, want %d (each record once, in order)", k, strings.Count(got, "\n"), strings.Count(want, "\n"))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "state/staging/*")); len(left) != 0 {
		t.Fatalf("staging not cleaned: %v", left)
	}
}

func TestFileSinkCheckRefusesPathsThatCannotBeRendered(t *testing.T) {
	dir := t.TempDir()
	s := newFileSink(t, dir, pipeline.ExactlyOnce, filepath.Join(dir, "out/{{ date(ts) }}.jsonl"), nil)
	good := &pipeline.Record{}
	good.SetFields().Set("ts", "2026-01-02T03:04:05Z")
	if err := s.Check(good); err != nil {
		t.Fatalf("Check of a record with ts: %v", err)
	}
	for name, v := range map[string]any{"no ts": nil, "not a time": "yesterday", "a bool": true} {
		r := &pipeline.Record{}
		r.SetFields().Set("msg", "x")
		if v != nil {
			r.Fields().Set("ts", v)
		}
		if err := s.Check(r); err == nil || !strings.HasPrefix(err.Error(), "file: path: ") {
			t.Errorf("%s: Check = %v, want a file: path error", name, err)
		}
		if err := s.Write(context.Background(), &pipeline.Batch{Records: []*pipeline.Record{r}}); err == nil || !strings.HasPrefix(err.Error(), "file: path for record") {
			t.Errorf("%s: Write = %v, want a file: path error", name, err)
		}
	}
	noName := &FileConfig{Path: mustTemplate(t, dir+"/out/{{ dir }}/"), MaxOpenFiles: 1, BufferBytes: 4096}
	if err := noName.Validate(); err == nil || !strings.Contains(err.Error(), "names a directory, not a file") {
		t.Errorf("a path ending in a separator: Validate = %v", err)
	}
	constant := newFileSink(t, dir, pipeline.ExactlyOnce, filepath.Join(dir, "out/all.jsonl"), nil)
	if err := constant.Check(&pipeline.Record{}); err != nil {
		t.Errorf("constant path: Check = %v", err)
	}
}

// A crash under at_least_once leaves what was written after the last
// flush, torn mid-line or not; the next run cuts it back to the length
// flushed at the last checkpoint.
func TestFileSinkAtLeastOnceCutsBackToTheFlushedLength(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	s := newFileSink(t, dir, pipeline.AtLeastOnce, out, nil)
	if err := s.Write(ctx, batchOf(0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batchOf(10, 400)); err != nil { // more than the 4 KiB buffer: partly in the file
		t.Fatal(err)
	}
	s.Close(ctx)
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"i":400,"da`) // the crash tore this line
	f.Close()

	r := newFileSink(t, dir, pipeline.AtLeastOnce, out, nil)
	if got := readFile(t, out); got != lines(0, 10) {
		t.Fatalf("after restart the file holds %d bytes, want the %d flushed", len(got), len(lines(0, 10)))
	}
	if err := r.Write(ctx, batchOf(10, 20)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != lines(0, 20) {
		t.Fatalf("after more writes:\n%s", got)
	}
}

// A file first written after the last flush is not in the flushed record;
// its torn last line is cut when the sink opens it again, and a complete
// file is left alone.
func TestFileSinkAtLeastOnceCutsATornLastLine(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	torn, whole := filepath.Join(dir, "d0/x.jsonl"), filepath.Join(dir, "d1/x.jsonl")
	os.MkdirAll(filepath.Dir(torn), 0o755)
	os.MkdirAll(filepath.Dir(whole), 0o755)
	long := strings.Repeat("x", 100<<10) // the torn line is longer than one read back
	if err := os.WriteFile(torn, []byte(lines(0, 3)+`{"i":3,"pad":"`+long), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(whole, []byte(lines(1, 2)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newFileSink(t, dir, pipeline.AtLeastOnce, filepath.Join(dir, "{{ day }}/x.jsonl"), nil)
	if err := s.Write(ctx, batchOf(4, 6)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, torn), lines(0, 3)+lines(4, 5); got != want {
		t.Errorf("torn file:\n%.300s\nwant:\n%s", got, want)
	}
	if got, want := readFile(t, whole), lines(1, 2)+lines(5, 6); got != want {
		t.Errorf("complete file:\n%s\nwant:\n%s", got, want)
	}
	lone := filepath.Join(dir, "lone.jsonl")
	os.WriteFile(lone, []byte(`{"i":0,"to`), 0o644)
	l := newFileSink(t, dir, pipeline.AtLeastOnce, lone, nil)
	if err := l.Write(ctx, batchOf(1, 2)); err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)
	if got := readFile(t, lone); got != lines(1, 2) {
		t.Errorf("a file of one torn line: %q", got)
	}
}

// Part numbers survive a restart under at_least_once: the next run goes on
// in the last part instead of appending to the first one again.
func TestFileSinkAtLeastOnceRollsOnAfterARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.jsonl")
	roll := func(c *FileConfig) { c.MaxBytes = 100 }
	s := newFileSink(t, dir, pipeline.AtLeastOnce, path, roll)
	if err := s.Write(ctx, batchOf(0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	r := newFileSink(t, dir, pipeline.AtLeastOnce, path, roll)
	if err := r.Write(ctx, batchOf(10, 20)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "x-*.jsonl"))
	sort.Strings(parts)
	var all string
	for _, p := range parts {
		c := readFile(t, p)
		if len(c) > 100+20 {
			t.Errorf("%s is %d bytes, limit 100 (+ one line)", filepath.Base(p), len(c))
		}
		all += c
	}
	if all != lines(0, 20) {
		t.Fatalf("parts in order hold:\n%s", all)
	}
}
