package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Output locks: every output a sink owns on the local file system (see
// pipeline.OutputOwner) is locked while its pipeline runs, so that a second
// weir process writing it is refused at start with the owner's name,
// whatever its data_dir or configuration file. `weir validate` catches two
// sinks of one file with the same path; these locks catch two processes.
//
// The locks are flock(2) locks on small files weir keeps beside the
// output; the kernel drops them when the process dies, so a SIGKILL never
// leaves a stale lock (the file stays, and means nothing unlocked):
//
//	out/.errors.jsonl.weir-lock    a file sink's file (path: out/errors.jsonl)
//	out/.weir-lock                 a directory tree: a parquet or arrow output
//	                               directory, or the literal directory of a
//	                               templated path (out/ for out/{{ service }}.jsonl)
//
// A lock file holds its owner as JSON (pid, host, pipeline, component,
// data_dir, configuration file, output, since); a refused process prints it.
//
// Every holder keeps a shared flock for as long as it runs, and the file
// says whose it is (its identity). A process whose identity matches joins;
// any other is refused. Only a process that finds the file unlocked may
// take it (exclusively, for the moment of writing its identity), so the
// first holder decides who may join:
//
//   - a sink's own output: the process's identity, so no other process
//     joins (sinks of one process share, and `weir validate` refuses two
//     with one path);
//   - the output of a sink that keeps a scale-out pipeline's tasks
//     (parquet, arrow under exactly_once with a Kafka source): "tasks",
//     the pipeline and the sink, so that the processes of that pipeline
//     share the directory, as the per-task manifests require, and nothing
//     else writes there;
//   - the directory an output is in: "intent", held by every sink with an
//     output in it, of any process, so that a templated path or a columnar
//     output that owns that directory's whole tree is refused while
//     another process writes a file in it, and the other way round. This
//     reaches one level: out/{{ a }}/x.jsonl and out/2026/x.jsonl in two
//     processes are not caught. A directory output takes its intent lock
//     in its parent only when that parent is inside the working directory,
//     so weir never creates lock files above it.
//
// flock on a network file system is as good as that file system's locks.

const lockFileName = ".weir-lock"

// lockOwner is the content of a lock file.
type lockOwner struct {
	Identity  string    `json:"identity"`
	PID       int       `json:"pid"`
	Host      string    `json:"host"`
	Pipeline  string    `json:"pipeline"`
	Component string    `json:"component"`
	DataDir   string    `json:"data_dir"`
	Config    string    `json:"config,omitempty"`
	Output    string    `json:"output,omitempty"`
	Since     time.Time `json:"since"`
}

// processOwner is this process as the owner of a lock.
func processOwner(pipeline, component, dataDir, configFile, output string) lockOwner {
	host, _ := os.Hostname()
	o := lockOwner{Identity: processIdentity, PID: os.Getpid(), Host: host, Pipeline: pipeline,
		Component: component, Output: output, Since: time.Now().UTC()}
	o.DataDir, _ = filepath.Abs(dataDir)
	if configFile != "" {
		o.Config, _ = filepath.Abs(configFile)
	}
	return o
}

func (o lockOwner) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d on %s, pipeline %q", o.PID, o.Host, o.Pipeline)
	if o.Component != "" {
		fmt.Fprintf(&b, ", component %s", o.Component)
	}
	fmt.Fprintf(&b, ", data_dir %s", o.DataDir)
	if o.Config != "" {
		fmt.Fprintf(&b, ", config %s", o.Config)
	}
	fmt.Fprintf(&b, ", since %s", o.Since.Format(time.RFC3339))
	return b.String()
}

// alive reports whether the owner's process still runs, as far as this
// host can tell (true for another host's).
func (o lockOwner) alive() bool {
	if host, _ := os.Hostname(); host != o.Host || o.PID <= 0 {
		return true
	}
	err := syscall.Kill(o.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

const intentIdentity = "intent"

// processIdentity names this process in lock files.
var processIdentity = func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("process:%s:%d:%d", host, os.Getpid(), time.Now().UnixNano())
}()

// heldLock is a lock file this process holds, shared by its holders here.
type heldLock struct {
	f        *os.File
	identity string
	refs     int
}

var outputLocks = struct {
	sync.Mutex
	held map[string]*heldLock // by lock file path (absolute, symlinks resolved)
}{held: map[string]*heldLock{}}

// lockOutputs locks every output the sinks of spec own; release unlocks
// them. dataDir and configFile go into the lock files.
func lockOutputs(spec *pipeline.Spec, dataDir, configFile string) (release func(), err error) {
	var got []string
	release = func() {
		for i := len(got) - 1; i >= 0; i-- {
			unlockOutput(got[i])
		}
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	tasks := spec.TaskStoreIndex()
	if len(spec.PartitionKeys()) == 0 {
		tasks = -1 // no source's splits are tasks
	}
	comps := append([]*pipeline.Component(nil), spec.Sinks...)
	if spec.DeadLetter != nil {
		comps = append(comps, spec.DeadLetter)
	}
	for i, c := range comps {
		oo, ok := c.Config.(pipeline.OutputOwner)
		if !ok {
			continue
		}
		out, ok := oo.OwnedOutput()
		if !ok {
			continue
		}
		own, intent, err := lockPaths(out)
		if err != nil {
			return release, fmt.Errorf("%s: %s: lock output %s: %w", spec.Name, c.ID, out.Path, err)
		}
		owner := processOwner(spec.Name, spec.Name+"/"+c.ID, dataDir, configFile, out.Path)
		if i == tasks {
			owner.Identity = "tasks:" + spec.Name + "/" + c.ID
		}
		if err := lockOutput(own, owner); err != nil {
			return release, outputLockError(spec, c, out, err)
		}
		got = append(got, own)
		if intent == "" {
			continue
		}
		owner.Identity = intentIdentity
		if err := lockOutput(intent, owner); err != nil {
			if errors.Is(err, os.ErrPermission) {
				continue // a directory weir may not write in: the own lock still holds
			}
			return release, outputLockError(spec, c, out, err)
		}
		got = append(got, intent)
	}
	return release, nil
}

// lockPaths returns the lock file of an output, and the intent lock file of
// the directory it is in ("" when there is none to take).
func lockPaths(out pipeline.OwnedOutput) (own, intent string, err error) {
	abs, err := filepath.Abs(out.Path)
	if err != nil {
		return "", "", err
	}
	dir := abs
	if !out.Tree {
		dir = filepath.Dir(abs)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return "", "", err
	}
	if !out.Tree {
		return filepath.Join(dir, "."+filepath.Base(abs)+lockFileName), filepath.Join(dir, lockFileName), nil
	}
	own = filepath.Join(dir, lockFileName)
	parent := filepath.Dir(dir)
	wd, err := os.Getwd()
	if err == nil {
		wd, err = filepath.EvalSymlinks(wd)
	}
	if err != nil || parent == dir {
		return own, "", nil
	}
	if rel, err := filepath.Rel(wd, parent); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return own, "", nil // above the working directory
	}
	return own, filepath.Join(parent, lockFileName), nil
}

// conflictError is a lock held by another process.
type conflictError struct{ owner lockOwner }

func (e *conflictError) Error() string { return e.owner.describe() }

func outputLockError(spec *pipeline.Spec, c *pipeline.Component, out pipeline.OwnedOutput, err error) error {
	var ce *conflictError
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %s: lock output %s: %w", spec.Name, c.ID, out.Path, err)
	}
	o := ce.owner
	what := "writes " + out.Path
	if out.Tree {
		what = "writes into " + out.Path
	}
	// A shared lock names its first holder, which may have exited since.
	first := "the first such process; there may be others"
	if !o.alive() {
		first = "the first such process, which has exited: others hold the lock now"
	}
	switch {
	case o.Identity == intentIdentity:
		return fmt.Errorf("%s: %s %s, and another weir process writes an output inside it (%s, output %s, %s): "+
			"two writers of one output lose each other's records; stop it, or give this sink a directory of its own",
			spec.Name, c.ID, what, o.describe(), o.Output, first)
	case strings.HasPrefix(o.Identity, "tasks:"):
		return fmt.Errorf("%s: %s %s, which the processes of another scale-out pipeline share (%s, output %s, %s): "+
			"only processes of that pipeline may write there; give this sink its own path",
			spec.Name, c.ID, what, o.describe(), o.Output, first)
	}
	return fmt.Errorf("%s: %s %s, which another weir process is writing (%s, output %s): "+
		"two writers of one output lose each other's records; stop that process, or give this sink its own path",
		spec.Name, c.ID, what, o.describe(), o.Output)
}

// lockOutput takes the lock file at path for owner, or joins it when
// owner's identity is the one it holds.
func lockOutput(path string, owner lockOwner) error {
	outputLocks.Lock()
	defer outputLocks.Unlock()
	if h := outputLocks.held[path]; h != nil {
		if h.identity == owner.Identity || owner.Identity == intentIdentity || h.identity != intentIdentity {
			h.refs++ // this process holds it already
			return nil
		}
		// Held here as the directory of outputs; now an output owns it
		// whole, which only works if no other process holds it too.
		if err := claimLock(h.f, owner, true); err != nil {
			if errors.Is(err, errLockShared) {
				if holder, rerr := readOwner(h.f); rerr == nil {
					return &conflictError{holder}
				}
			}
			return err
		}
		h.identity = owner.Identity
		h.refs++
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := takeLock(f, owner); err != nil {
		f.Close()
		return err
	}
	outputLocks.held[path] = &heldLock{f: f, identity: owner.Identity, refs: 1}
	return nil
}

// takeLock leaves f locked shared with owner's identity in it, or returns
// a *conflictError naming the holder.
func takeLock(f *os.File, owner lockOwner) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := claimLock(f, owner, false)
		if !errors.Is(err, errLockShared) {
			return err // nil, a *conflictError, or I/O
		}
		// Held by others: join them if they are who we are.
		serr := flock(f, syscall.LOCK_SH|syscall.LOCK_NB)
		if serr == nil {
			holder, rerr := readOwner(f)
			if rerr == nil && holder.Identity == owner.Identity {
				return nil
			}
			flock(f, syscall.LOCK_UN)
			if rerr != nil {
				return rerr
			}
			return &conflictError{holder}
		}
		if !errors.Is(serr, syscall.EWOULDBLOCK) {
			return serr
		}
		// Locked exclusively: another process is claiming it right now.
		if time.Now().After(deadline) {
			return fmt.Errorf("lock file %s stayed locked exclusively for 2s", f.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// errLockShared is a lock held by other processes.
var errLockShared = errors.New("held by other processes")

// claimLock makes this process the first holder of f: it locks it
// exclusively (errLockShared when others hold it), writes owner, and turns
// the lock into a shared one. held says f is locked shared already (by this
// process, as an intent lock). flock changes a lock's mode by dropping it
// and taking it again, so another process may claim the file in between:
// the identity read back says who won (a *conflictError when it was not
// owner).
func claimLock(f *os.File, owner lockOwner, held bool) error {
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if held {
			shareLock(f) // the failed change dropped it
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return errLockShared
		}
		return err
	}
	b, _ := json.Marshal(owner)
	b = append(b, '\n')
	err := f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(b, 0)
	}
	if err != nil {
		flock(f, syscall.LOCK_UN)
		return err
	}
	if err := shareLock(f); err != nil {
		return err
	}
	holder, err := readOwner(f)
	if err != nil {
		flock(f, syscall.LOCK_UN)
		return err
	}
	if holder.Identity != owner.Identity {
		flock(f, syscall.LOCK_UN)
		return &conflictError{holder}
	}
	return nil
}

// shareLock locks f shared, waiting out a process that holds it
// exclusively for the moment of claiming it.
func shareLock(f *os.File) error {
	for range 400 {
		err := flock(f, syscall.LOCK_SH|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("lock file %s stayed locked exclusively for 2s", f.Name())
}

func readOwner(f *os.File) (lockOwner, error) {
	var o lockOwner
	fi, err := f.Stat()
	if err != nil {
		return o, err
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("lock file %s holds no owner (%w)", f.Name(), err)
	}
	return o, nil
}

func unlockOutput(path string) {
	outputLocks.Lock()
	defer outputLocks.Unlock()
	h := outputLocks.held[path]
	if h == nil {
		return
	}
	if h.refs--; h.refs == 0 {
		h.f.Close() // drops the flock; the file stays (removing it would race)
		delete(outputLocks.held, path)
	}
}

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = syscall.Flock(int(fd), how) }); err != nil {
		return err
	}
	return ferr
}
