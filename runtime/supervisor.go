package runtime

// Supervisor: runs a configuration's pipelines, each with its own stop
// channel, and applies a changed configuration while they run (`weir run
// --watch`, SIGHUP): a pipeline whose configuration changed takes a final
// checkpoint, commits and restarts with the new configuration, recovering
// from that checkpoint; unchanged pipelines keep running; new pipelines
// start; removed ones stop gracefully.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// Revision is one loaded version of a configuration file: the validated
// Config, and a fingerprint of each pipeline's YAML that says whether it
// changed between two revisions.
type Revision struct {
	Config *pipeline.Config
	// Fingerprints maps each pipeline's name to a hash of its YAML after
	// ${VAR} interpolation, ignoring comments, layout and its `tests:`.
	Fingerprints map[string]string
}

// LoadRevision reads and validates a configuration file with reg.
func LoadRevision(reg *pipeline.Registry, file string) (*Revision, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("runtime: read config: %w", err)
	}
	return NewRevision(reg, file, data)
}

// NewRevision validates a configuration's text with reg. A configuration
// that does not validate returns the loader's error (pipeline.ConfigErrors).
func NewRevision(reg *pipeline.Registry, file string, data []byte) (*Revision, error) {
	cfg, err := reg.Load(file, data)
	if err != nil {
		return nil, err
	}
	fps, err := pipeline.Fingerprints(file, data)
	if err != nil {
		return nil, err
	}
	return &Revision{Config: cfg, Fingerprints: fps}, nil
}

// RunState is a supervised pipeline's state as the supervisor sees it.
type RunState string

// The supervised pipeline states.
const (
	RunStarting   RunState = "starting"
	RunRunning    RunState = "running"
	RunRestarting RunState = "restarting" // stopping to apply a new configuration
	RunStopping   RunState = "stopping"
	RunFinished   RunState = "finished"
	RunFailed     RunState = "failed"   // for good: its restart policy gave up, or --fail-fast
	RunRetrying   RunState = "retrying" // failed; started again after a backoff (pipeline.Restart)
)

// PipelineStatus is one pipeline's status, for /readyz and progress.
type PipelineStatus struct {
	Name  string
	State RunState
	// Stats are the live figures of the current run (nil before it built
	// its Stats).
	Stats *Stats
	// CheckpointInterval is the pipeline's configured interval.
	CheckpointInterval time.Duration
	// Restarts counts the reloads applied to this pipeline.
	Restarts int
	// Err is why the pipeline failed (the last failure, while retrying).
	Err error
	// Failures counts the failures in a row, and NextRetry is when a
	// retrying pipeline starts again.
	Failures  int
	NextRetry time.Time
}

// Supervisor runs pipelines and applies new revisions of their
// configuration while they run. Create one with NewSupervisor, call Run
// once, and Reload from any goroutine.
type Supervisor struct {
	opts  Options
	names []string // pipelines to run; empty: all

	reloads chan reloadRequest
	exits   chan runExit
	retries chan runExit  // a backoff ended: start the pipeline again (err unused)
	done    chan struct{} // closed when Run returns

	mu  sync.Mutex // guards cfg, fps and runs
	cfg *pipeline.Config
	fps map[string]string
	// runs holds every pipeline that was started, by name, including
	// finished and failed ones (for Status).
	runs map[string]*supervised
}

type supervised struct {
	spec     *pipeline.Spec
	fp       string
	stop     chan struct{} // closed to stop gracefully
	stopped  bool
	state    RunState
	stats    *Stats
	restarts int
	err      error
	// next is the configuration to start once the current run returned
	// (a reload); remove says the pipeline left the configuration.
	next     *pipeline.Spec
	nextFP   string
	previous *pipeline.Spec // the configuration before the last reload, to fall back to
	prevFP   string
	remove   bool
	gen      int // run generation, to match exits to runs
	// failures counts failures in a row; retry is the backoff timer of a
	// retrying pipeline, firing at retryAt.
	failures int
	retry    *time.Timer
	retryAt  time.Time
}

type runExit struct {
	name string
	gen  int
	err  error
}

type reloadRequest struct {
	rev  *Revision
	done chan ReloadResult
}

// ReloadResult says what a Reload did.
type ReloadResult struct {
	Restarted, Started, Stopped, Unchanged []string
	ended                                  int // retrying pipelines removed (no run to wait for)
}

func (r ReloadResult) String() string {
	var parts []string
	add := func(what string, names []string) {
		if len(names) > 0 {
			parts = append(parts, what+" "+strings.Join(names, ", "))
		}
	}
	add("restarting", r.Restarted)
	add("starting", r.Started)
	add("stopping", r.Stopped)
	add("unchanged", r.Unchanged)
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, "; ")
}

// NewSupervisor returns a supervisor for rev's pipelines (only those
// named, when names is not empty).
func NewSupervisor(rev *Revision, names []string, opts Options) (*Supervisor, error) {
	if _, err := Select(rev.Config, names); err != nil {
		return nil, err
	}
	return &Supervisor{opts: opts.withDefaults(), names: names, cfg: rev.Config, fps: rev.Fingerprints,
		reloads: make(chan reloadRequest), exits: make(chan runExit), retries: make(chan runExit), done: make(chan struct{}), runs: map[string]*supervised{}}, nil
}

// Run runs the pipelines until every one has finished: finite input
// done, or stop closed (each takes a final checkpoint and commits), or
// failed for good. A pipeline that fails is started again from its last
// checkpoint after a backoff, as its restart policy says
// (pipeline.Restart), while the others keep running; once the policy
// gives up it has failed for good, and its error is in Run's. With
// Options.FailFast, the first failure stops every pipeline gracefully
// instead. Cancelling ctx stops at once, without a final checkpoint.
func (s *Supervisor) Run(ctx context.Context, stop <-chan struct{}) error {
	defer close(s.done)
	specs, _ := Select(s.cfg, s.names)
	active := 0
	for _, spec := range specs {
		s.start(ctx, &supervised{spec: spec, fp: s.fps[spec.Name]})
		active++
	}
	var errs []error
	stopping := false
	stopAll := func() {
		stopping = true
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.runs {
			r.next, r.remove = nil, false
			if r.state == RunRetrying {
				// No run to stop: it ends here, failed.
				r.retry.Stop()
				r.state = RunFailed
				active--
				errs = append(errs, r.err)
			}
			if r.state == RunRunning || r.state == RunStarting || r.state == RunRestarting {
				r.state = RunStopping
			}
			if !r.stopped {
				r.stopped = true
				close(r.stop)
			}
		}
	}
	for active > 0 {
		select {
		case <-stop:
			stop = nil
			s.opts.Logger.Info("stopping every pipeline: final checkpoint and commit")
			stopAll()
		case req := <-s.reloads:
			if stopping {
				req.done <- ReloadResult{}
				continue
			}
			res := s.apply(ctx, req.rev)
			active += len(res.Started) - res.ended
			req.done <- res
		case rq := <-s.retries:
			s.mu.Lock()
			r := s.runs[rq.name]
			ok := r != nil && r.gen == rq.gen && r.state == RunRetrying && !stopping
			s.mu.Unlock()
			if ok {
				s.opts.Logger.Info("pipeline starting again from its last checkpoint", "pipeline", rq.name, "attempt", r.failures)
				s.start(ctx, r)
			}
		case ex := <-s.exits:
			s.mu.Lock()
			r := s.runs[ex.name]
			if r == nil || r.gen != ex.gen {
				s.mu.Unlock()
				continue
			}
			restart, fallback := r.next, false
			switch {
			case r.remove:
				delete(s.runs, ex.name)
				s.mu.Unlock()
				active--
				s.opts.Logger.Info("pipeline removed by reload", "pipeline", ex.name, "err", ex.err)
				continue
			case restart != nil && ex.err == nil && !stopping:
				r.previous, r.prevFP = r.spec, r.fp
				r.spec, r.fp, r.next = restart, r.nextFP, nil
				r.restarts++
			case ex.err != nil && r.previous != nil && r.stats != nil && r.stats.Started().IsZero() && !stopping && ctx.Err() == nil:
				// The new configuration failed before running (a sink
				// that cannot open, say): go back to the previous one.
				fallback = true
				s.opts.Logger.Error("reloaded pipeline failed to start; going back to its previous configuration",
					"pipeline", ex.name, "err", ex.err)
				r.spec, r.fp, r.previous = r.previous, r.prevFP, nil
				r.restarts--
			default:
				r.err = ex.err
				var permanent permanentError
				if ex.err != nil && !stopping && ctx.Err() == nil && !s.opts.FailFast && !errors.As(ex.err, &permanent) {
					if r.stats != nil && r.stats.Checkpoints.Load() > 0 {
						r.failures = 0 // it ran a while: a new streak
					}
					r.failures++
					if pol := r.spec.Restart; pol.Retries(r.failures) {
						delay := pol.Delay(r.failures)
						r.state, r.retryAt = RunRetrying, s.opts.Now().Add(delay)
						name, gen := ex.name, r.gen
						r.retry = time.AfterFunc(delay, func() {
							select {
							case s.retries <- runExit{name: name, gen: gen}:
							case <-s.done:
							}
						})
						s.mu.Unlock()
						of := "without end"
						if pol.MaxRetries >= 0 {
							of = strconv.Itoa(pol.MaxRetries)
						}
						s.opts.Logger.Error("pipeline failed; the others keep running, and it starts again from its last checkpoint",
							"pipeline", ex.name, "err", ex.err, "retry", r.failures, "of", of, "in", delay.String())
						continue
					}
				}
				r.state = RunFinished
				if ex.err != nil {
					r.state = RunFailed
				}
				s.mu.Unlock()
				active--
				if ex.err != nil && ctx.Err() == nil {
					errs = append(errs, ex.err)
					switch {
					case stopping:
					case s.opts.FailFast:
						s.opts.Logger.Error("pipeline failed; stopping the others (--fail-fast)", "pipeline", ex.name, "err", ex.err)
						stopAll()
					case errors.As(ex.err, new(permanentError)):
						s.opts.Logger.Error("pipeline failed for good: starting it again cannot mend this; the others keep running",
							"pipeline", ex.name, "err", ex.err)
					default:
						s.opts.Logger.Error("pipeline failed for good: its restart policy gave up; the others keep running",
							"pipeline", ex.name, "err", ex.err, "failures", r.failures)
					}
				}
				continue
			}
			s.mu.Unlock()
			if fallback || restart != nil {
				s.start(ctx, r)
			}
		}
	}
	if len(errs) == 0 {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// start runs r.spec in a new goroutine.
func (s *Supervisor) start(ctx context.Context, r *supervised) {
	s.mu.Lock()
	r.gen++
	r.stop, r.stopped, r.state, r.stats = make(chan struct{}), false, RunStarting, nil
	s.runs[r.spec.Name] = r
	gen, spec, stop := r.gen, r.spec, r.stop
	cfg := s.cfg
	s.mu.Unlock()
	opts := s.opts
	prev := opts.OnStats
	opts.OnStats = func(st *Stats) {
		s.mu.Lock()
		if r.gen == gen {
			r.stats = st
		}
		s.mu.Unlock()
		if prev != nil {
			prev(st)
		}
	}
	go func() {
		err := RunPipeline(ctx, cfg, spec, stop, opts)
		s.exits <- runExit{name: spec.Name, gen: gen, err: err}
	}()
}

// Reload applies rev: pipelines whose fingerprint changed restart with
// their new configuration after a final checkpoint, new ones start,
// removed ones stop gracefully, the others keep running. A change of
// data_dir cannot be applied to running pipelines and is refused (nothing
// changes); a change of http is applied at the next start and logged.
// Reload returns once the changes are under way (restarts complete in the
// background; see Status). It returns an error after Run has returned.
func (s *Supervisor) Reload(ctx context.Context, rev *Revision) (ReloadResult, error) {
	s.mu.Lock()
	dataDir, httpAddr := s.cfg.DataDir, s.cfg.HTTP
	s.mu.Unlock()
	if rev.Config.DataDir != dataDir {
		return ReloadResult{}, fmt.Errorf("runtime: reload: data_dir changed from %q to %q; restart weir to apply it", dataDir, rev.Config.DataDir)
	}
	if rev.Config.HTTP != httpAddr {
		s.opts.Logger.Warn("reload: a change of `http:` applies at the next start of weir", "http", rev.Config.HTTP)
	}
	if len(s.names) > 0 {
		if _, err := Select(rev.Config, s.names); err != nil {
			return ReloadResult{}, fmt.Errorf("runtime: reload: %w", err)
		}
	}
	req := reloadRequest{rev: rev, done: make(chan ReloadResult, 1)}
	select {
	case s.reloads <- req:
	case <-s.done:
		return ReloadResult{}, errors.New("runtime: reload: the pipelines have stopped")
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res, nil
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
}

// apply runs on Run's goroutine.
func (s *Supervisor) apply(ctx context.Context, rev *Revision) ReloadResult {
	var res ReloadResult
	specs, _ := Select(rev.Config, s.names)
	want := map[string]bool{}
	var toStart []*supervised
	s.mu.Lock()
	s.cfg, s.fps = rev.Config, rev.Fingerprints
	for _, spec := range specs {
		want[spec.Name] = true
		fp := rev.Fingerprints[spec.Name]
		r := s.runs[spec.Name]
		switch {
		case r != nil && r.state == RunRetrying:
			// Waiting out a backoff: a new configuration is tried now.
			if r.fp == fp {
				r.spec = spec
				res.Unchanged = append(res.Unchanged, spec.Name)
				continue
			}
			r.retry.Stop()
			r.spec, r.fp, r.failures = spec, fp, 0
			res.Restarted = append(res.Restarted, spec.Name)
			toStart = append(toStart, r)
		case r == nil || r.state == RunFinished || r.state == RunFailed:
			if r != nil && r.fp == fp {
				res.Unchanged = append(res.Unchanged, spec.Name)
				continue
			}
			res.Started = append(res.Started, spec.Name)
			toStart = append(toStart, &supervised{spec: spec, fp: fp})
		case r.fp == fp && r.next == nil && !r.remove:
			r.spec = spec // same YAML; keep the running instance
			res.Unchanged = append(res.Unchanged, spec.Name)
		default:
			res.Restarted = append(res.Restarted, spec.Name)
			r.next, r.nextFP, r.remove = spec, fp, false
			r.state = RunRestarting
			if !r.stopped {
				r.stopped = true
				close(r.stop)
			}
		}
	}
	for name, r := range s.runs {
		if want[name] || r.remove {
			continue
		}
		if r.state == RunFinished || r.state == RunFailed {
			delete(s.runs, name)
			continue
		}
		res.Stopped = append(res.Stopped, name)
		if r.state == RunRetrying {
			r.retry.Stop()
			delete(s.runs, name)
			res.ended++
			continue
		}
		r.remove, r.next = true, nil
		r.state = RunStopping
		if !r.stopped {
			r.stopped = true
			close(r.stop)
		}
	}
	s.mu.Unlock()
	for _, r := range toStart {
		s.start(ctx, r)
	}
	for _, l := range [][]string{res.Restarted, res.Started, res.Stopped, res.Unchanged} {
		slices.Sort(l)
	}
	return res
}

// Status returns every supervised pipeline's status, sorted by name.
func (s *Supervisor) Status() []PipelineStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PipelineStatus, 0, len(s.runs))
	for name, r := range s.runs {
		st := r.state
		if st == RunStarting && r.stats != nil && r.stats.State() == StateRunning {
			r.state, st = RunRunning, RunRunning
		}
		ps := PipelineStatus{Name: name, State: st, Stats: r.stats,
			CheckpointInterval: r.spec.CheckpointInterval, Restarts: r.restarts, Err: r.err, Failures: r.failures}
		if st == RunRetrying {
			ps.NextRetry = r.retryAt
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PipelineStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Logger returns the supervisor's logger.
func (s *Supervisor) Logger() *slog.Logger { return s.opts.Logger }
