package sources

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// appLog is an application writing numbered lines ("n=000001") to
// dir/app.log through an O_APPEND descriptor, as loggers do: after a
// rotation by rename it keeps writing to the renamed file until it reopens.
type appLog struct {
	t    testing.TB
	dir  string
	path string
	f    *os.File
	next int // the number of the next line
}

func newAppLog(t testing.TB, dir string) *appLog {
	a := &appLog{t: t, dir: dir, path: filepath.Join(dir, "app.log"), next: 1}
	a.reopen()
	t.Cleanup(func() { _ = a.f.Close() })
	return a
}

// write writes the next k lines.
func (a *appLog) write(k int) {
	a.t.Helper()
	var sb strings.Builder
	for range k {
		fmt.Fprintf(&sb, "n=%06d\n", a.next)
		a.next++
	}
	if _, err := a.f.WriteString(sb.String()); err != nil {
		a.t.Fatal(err)
	}
}

// reopen opens app.log again (creating it), as after a rotation.
func (a *appLog) reopen() {
	a.t.Helper()
	if a.f != nil {
		_ = a.f.Close()
	}
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		a.t.Fatal(err)
	}
	a.f = f
}

func (a *appLog) written() int { return a.next - 1 }

// shift renames dir/app.log.N<suffix> to N+1 for every N >= from, highest
// first, as logrotate does before it makes a new app.log.1.
func shift(t testing.TB, dir, suffix string, from int) {
	t.Helper()
	top := from
	for exists(filepath.Join(dir, fmt.Sprintf("app.log.%d%s", top, suffix))) {
		top++
	}
	for n := top - 1; n >= from; n-- {
		mustRename(t, filepath.Join(dir, fmt.Sprintf("app.log.%d%s", n, suffix)), filepath.Join(dir, fmt.Sprintf("app.log.%d%s", n+1, suffix)))
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func mustRename(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// copyFile copies from to a new file to, as cp does.
func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

// gzipAway compresses from into to and removes from, as gzip does.
func gzipAway(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(from); err != nil {
		t.Fatal(err)
	}
}

// renameRotation is logrotate's create: app.log is renamed to rotated, the
// application writes a few more lines to it before it reopens app.log.
func renameRotation(t testing.TB, a *appLog, rotated string) {
	t.Helper()
	mustRename(t, a.path, rotated)
	a.write(3)
	a.reopen()
}

// rotateMode is one way logrotate rotates app.log.
type rotateMode struct {
	name string
	// globs are the rotated files' patterns, matched by the "rotated
	// matched" variants beside app.log*.
	globs  []string
	rotate func(t testing.TB, a *appLog)
}

var rotateModes = []rotateMode{
	{"create", nil, func(t testing.TB, a *appLog) {
		shift(t, a.dir, "", 1)
		renameRotation(t, a, a.path+".1")
	}},
	{"copytruncate", nil, func(t testing.TB, a *appLog) {
		shift(t, a.dir, "", 1)
		copyFile(t, a.path, a.path+".1")
		if err := os.Truncate(a.path, 0); err != nil {
			t.Fatal(err)
		}
	}},
	{"compress", nil, func(t testing.TB, a *appLog) {
		shift(t, a.dir, ".gz", 1)
		renameRotation(t, a, a.path+".1")
		gzipAway(t, a.path+".1", a.path+".1.gz")
	}},
	{"delaycompress", nil, func(t testing.TB, a *appLog) {
		// The previous rotation's app.log.1 is compressed now, to app.log.2.gz.
		shift(t, a.dir, ".gz", 2)
		if exists(a.path + ".1") {
			gzipAway(t, a.path+".1", a.path+".2.gz")
		}
		renameRotation(t, a, a.path+".1")
	}},
	{"copytruncate compress", nil, func(t testing.TB, a *appLog) {
		shift(t, a.dir, ".gz", 1)
		copyFile(t, a.path, a.path+".1")
		if err := os.Truncate(a.path, 0); err != nil {
			t.Fatal(err)
		}
		gzipAway(t, a.path+".1", a.path+".1.gz")
	}},
	{"olddir", []string{"old/app.log*"}, func(t testing.TB, a *appLog) {
		old := filepath.Join(a.dir, "old")
		shift(t, old, "", 1)
		renameRotation(t, a, filepath.Join(old, "app.log.1"))
	}},
	{"copytruncate olddir", []string{"old/app.log*"}, func(t testing.TB, a *appLog) {
		old := filepath.Join(a.dir, "old")
		shift(t, old, "", 1)
		copyFile(t, a.path, filepath.Join(old, "app.log.1"))
		if err := os.Truncate(a.path, 0); err != nil {
			t.Fatal(err)
		}
	}},
}

// rotationGlobs returns the paths of a variant: app.log alone, or also the
// names the rotated files get.
func rotationGlobs(dir string, m rotateMode, matched bool) []string {
	if !matched {
		return []string{filepath.Join(dir, "app.log")}
	}
	out := []string{filepath.Join(dir, "app.log*")}
	for _, g := range m.globs {
		out = append(out, filepath.Join(dir, g))
	}
	return out
}

// rotationPhases are the lines written before, between and after three
// rotations: the first phase is longer than the fingerprint (1 KiB), the
// second shorter than what was read before it (the truncation is seen as
// a shorter file), the third longer (seen as a new head only).
var rotationPhases = []int{150, 20, 90, 30}

// allNumbered reports whether every line 1..n was delivered.
func allNumbered(n int) func(*got) bool {
	return func(g *got) bool {
		seen := make(map[string]bool, n)
		for _, r := range g.recs {
			seen[string(r.Value)] = true
		}
		for k := 1; k <= n; k++ {
			if !seen[fmt.Sprintf("n=%06d", k)] {
				return false
			}
		}
		return true
	}
}

// settled reports whether a follow-mode source has nothing left to do for
// now: no rotated file to finish, every open file read to its end.
func settled(src *fileSource) bool {
	for _, tf := range src.files {
		if tf.orphan || (tf.f != nil && !tf.caughtUp) {
			return false
		}
	}
	return true
}

// settle reads a follow-mode source on until it has settled and scanned
// its globs three more times, so that a file read twice (a copy taken for
// a new file, a compressed file) would have delivered its lines again.
func settle(t testing.TB, src *fileSource, g *got) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	scans, last := 0, src.nextGlob
	for scans < 3 {
		if time.Now().After(deadline) {
			pos, _ := src.Position()
			t.Fatalf("the source did not settle: %s", pos)
		}
		readOnce(t, src, g)
		if !settled(src) {
			scans = 0
			continue
		}
		if src.nextGlob != last {
			last = src.nextGlob
			scans++
		}
	}
}

// waitScan reads a follow-mode source until it has scanned its globs.
func waitScan(t testing.TB, src *fileSource, g *got) {
	t.Helper()
	last := src.nextGlob
	for deadline := time.Now().Add(10 * time.Second); src.nextGlob == last; {
		if time.Now().After(deadline) {
			t.Fatal("no scan within 10s")
		}
		readOnce(t, src, g)
	}
}

// stopSource stops src at its position (everything read so far is
// delivered) and returns a source restarted from it, as after a stop
// between two checkpoints with nothing in flight.
func stopSource(t testing.TB, src *fileSource) []byte {
	t.Helper()
	pos, err := src.Position()
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pos
}

func startSource(t testing.TB, c *FileConfig, batch int, pos []byte) *fileSource {
	t.Helper()
	src := newFileSource(t, c, batch)
	if pos != nil {
		if err := src.Seek(context.Background(), pos); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// TestFileFollowRotationModes rotates app.log three times in every
// logrotate mode, with app.log alone and with the rotated names matched
// too, while the source runs and while it is stopped (restarted from its
// position). At each rotation lines are still unread; every line must be
// delivered exactly once.
func TestFileFollowRotationModes(t *testing.T) {
	for _, m := range rotateModes {
		for _, matched := range []bool{false, true} {
			for _, down := range []bool{false, true} {
				name := fmt.Sprintf("%s/rotated_matched=%v/down=%v", m.name, matched, down)
				t.Run(name, func(t *testing.T) {
					dir := t.TempDir()
					a := newAppLog(t, dir)
					c := followCfg(rotationGlobs(dir, m, matched)...)
					const batch = 7
					var g got
					a.write(rotationPhases[0])
					src := startSource(t, c, batch, nil)
					for _, n := range rotationPhases[1:] {
						readOnce(t, src, &g) // part of what is there: the rest is unread at the rotation
						var pos []byte
						if down {
							pos = stopSource(t, src)
						}
						m.rotate(t, a)
						a.write(n)
						if down {
							src = startSource(t, c, batch, pos)
						} else {
							// A file that lives at app.log for less than a
							// glob interval is never seen: let a scan find it.
							waitScan(t, src, &g)
						}
					}
					collectUntil(t, src, &g, allNumbered(a.written()))
					settle(t, src, &g)
					numbered(t, &g, a.written())
				})
			}
		}
	}
}

// TestFileFiniteRotationModes runs a backfill (follow: false) between
// rotations in every mode: each run reads part of what is there, and the
// last run reads to the end. Every line is delivered exactly once.
func TestFileFiniteRotationModes(t *testing.T) {
	for _, m := range rotateModes {
		for _, matched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/rotated_matched=%v", m.name, matched), func(t *testing.T) {
				dir := t.TempDir()
				a := newAppLog(t, dir)
				c := fileCfg(rotationGlobs(dir, m, matched)...)
				const batch = 7
				var g got
				var pos []byte
				a.write(rotationPhases[0])
				for _, n := range rotationPhases[1:] {
					src := startSource(t, c, batch, pos)
					part := readN(t, src, batch)
					g.recs = append(g.recs, part.recs...)
					pos = stopSource(t, src)
					m.rotate(t, a)
					a.write(n)
				}
				rest := readToEOF(t, startSource(t, c, batch, pos), batch)
				g.recs = append(g.recs, rest.recs...)
				numbered(t, &g, a.written())
			})
		}
	}
}

// TestFileFollowCopySeenBeforeTruncate: the copy of copytruncate is found
// by a scan while app.log is still intact and holds unread lines; it is
// parked, not read as a new file. Then app.log is truncated: the copy
// delivers the lines app.log no longer holds, and app.log starts over.
func TestFileFollowCopySeenBeforeTruncate(t *testing.T) {
	dir := t.TempDir()
	a := newAppLog(t, dir)
	c := followCfg(filepath.Join(dir, "app.log*"))
	c.GlobInterval = time.Millisecond
	src := newFileSource(t, c, 50)
	var g got
	const first = 5000 // read 50 at a time: far from read when the copy is found
	a.write(first)
	readOnce(t, src, &g)
	copyFile(t, a.path, a.path+".1")
	fi, err := os.Stat(a.path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	copyID := idFor(fi, a.path+".1")
	// Read on until a scan has found the copy, app.log still unread to its end.
	for deadline := time.Now().Add(10 * time.Second); src.byID[copyID] == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the copy was never found")
		}
		readOnce(t, src, &g)
	}
	if len(g.recs) >= first {
		t.Fatalf("app.log was read to its end (%d lines) before the copy was found", len(g.recs))
	}
	if err := os.Truncate(a.path, 0); err != nil {
		t.Fatal(err)
	}
	a.write(30)
	collectUntil(t, src, &g, allNumbered(a.written()))
	settle(t, src, &g)
	numbered(t, &g, a.written())
}

// TestFileFollowCopyTruncateUnderLoad is copytruncate under a steady
// writer (about 1,000 lines/s) with only app.log matched: the lines not
// yet read when app.log is truncated are read from its copy, none lost.
// The copy and the truncation hold the writer's lock, as if the writer
// paused for them: what copytruncate loses between its copy and its
// truncation is inherent to it, not weir's.
func TestFileFollowCopyTruncateUnderLoad(t *testing.T) {
	dir := t.TempDir()
	a := newAppLog(t, dir)
	src := newFileSource(t, followCfg(a.path), 1000)
	var g got
	readOnce(t, src, &g) // the first scan is done

	const total, rotations = 3000, 10
	var mu sync.Mutex // held for a line's write, and for the copy and truncation
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for range total {
			<-tick.C
			mu.Lock()
			a.write(1)
			mu.Unlock()
		}
	}()
	rotatorDone := make(chan error, 1)
	go func() {
		n := 0
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for n < rotations {
			select {
			case <-stop:
				rotatorDone <- nil
				return
			case <-tick.C:
			}
			mu.Lock()
			err := copyTruncate(dir)
			mu.Unlock()
			if err != nil {
				rotatorDone <- err
				return
			}
			n++
		}
		rotatorDone <- nil
	}()
	// Read while the writer writes; stop rotating once it is done.
	for {
		readOnce(t, src, &g)
		select {
		case <-writerDone:
		default:
			continue
		}
		break
	}
	close(stop)
	if err := <-rotatorDone; err != nil {
		t.Fatal(err)
	}
	collectUntil(t, src, &g, func(g *got) bool { return allNumbered(total)(g) })
	settle(t, src, &g)
	numbered(t, &g, total)
}

// copyTruncate is logrotate's copytruncate of dir/app.log with rotate
// count: older copies shift up, the copy is app.log.1.
func copyTruncate(dir string) error {
	p := filepath.Join(dir, "app.log")
	top := 1
	for exists(fmt.Sprintf("%s.%d", p, top)) {
		top++
	}
	for n := top - 1; n >= 1; n-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", p, n), fmt.Sprintf("%s.%d", p, n+1)); err != nil {
			return err
		}
	}
	in, err := os.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(p + ".1")
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Truncate(p, 0)
}

// TestFileFollowCopyOfIntactFileNotRead: a copy of a file that is never
// truncated (a backup made with cp) is not read while the original lives,
// and a file that merely starts like a tracked one is read as its own.
func TestFileFollowCopyOfIntactFileNotRead(t *testing.T) {
	dir := t.TempDir()
	a := newAppLog(t, dir)
	a.write(50)
	src := newFileSource(t, followCfg(filepath.Join(dir, "*")), 100)
	var g got
	collectUntil(t, src, &g, allNumbered(50))
	copyFile(t, a.path, filepath.Join(dir, "backup.log"))
	// Another file with app.log's first lines and more of its own.
	head, err := os.ReadFile(a.path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "other.log"), string(head)+"mine\n")
	a.write(10)
	collectUntil(t, src, &g, func(g *got) bool { return allNumbered(60)(g) && hasValue("mine")(g) })
	settle(t, src, &g)
	other, backup := filepath.Join(dir, "other.log"), filepath.Join(dir, "backup.log")
	if n := len(recsFrom(&g, other)); n != 51 {
		t.Fatalf("other.log gave %d records, want its 51 lines", n)
	}
	if n := len(recsFrom(&g, backup)); n != 0 {
		t.Fatalf("the backup copy gave %d records, want none", n)
	}
	numbered(t, &got{recs: recsFrom(&g, a.path)}, 60)
}

// TestFileFollowTruncatedAgainBeforeRead: app.log is copied and truncated,
// gets new lines, and is copied and truncated again before any of them was
// read (its first copy's backlog fills every batch meanwhile). Its head
// must be fingerprinted from what it holds, not from what was read of it,
// or the second copy is never found and those lines are lost.
func TestFileFollowTruncatedAgainBeforeRead(t *testing.T) {
	dir := t.TempDir()
	a := newAppLog(t, dir)
	src := newFileSource(t, followCfg(a.path), 7)
	var g got
	a.write(150)
	readOnce(t, src, &g)
	if err := copyTruncate(dir); err != nil {
		t.Fatal(err)
	}
	a.write(20)
	readOnce(t, src, &g) // the truncation is seen; the copy's lines fill the batch
	if n := len(recsFrom(&g, a.path)); n != 7 {
		t.Fatalf("%d lines read from app.log, want the 7 read before the truncation only", n)
	}
	if err := copyTruncate(dir); err != nil {
		t.Fatal(err)
	}
	a.write(30)
	collectUntil(t, src, &g, allNumbered(a.written()))
	settle(t, src, &g)
	// Both copies were last seen as app.log.1 (the first, not matched, is
	// not followed to app.log.2): check the order per file by split.
	bySplit := got{}
	for _, r := range g.recs {
		c := *r
		c.Origin.Name = r.Split
		bySplit.recs = append(bySplit.recs, &c)
	}
	numbered(t, &bySplit, a.written())
}
