package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/weirhq/weir/internal/kafkatest"
)

// TestKafkaKill runs Kafka → parse → filter → Kafka under exactly_once as
// child processes of the weir binary, against the test's cluster over TCP,
// and kill -9s them at random moments while input keeps arriving; at the
// end the output, read as read_committed, holds every passing event once.
//
//   - single: one process, killed 10 times, restarted each time.
//   - group: three processes in one consumer group, each with its own
//     data_dir; one at a time is killed (6 kills) and restarted while the
//     other two keep running.
func TestKafkaKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill tests build the weir binary; skipped with -short")
	}
	bin := buildWeir(t)
	t.Run("single", func(t *testing.T) { killTest(t, bin, 1, 10) })
	t.Run("group", func(t *testing.T) { killTest(t, bin, 3, 6) })
}

func buildWeir(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weir")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/weirhq/weir")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build weir: %v\n%s", err, out)
	}
	return bin
}

// weirProc is one child weir process, restartable.
type weirProc struct {
	t    *testing.T
	bin  string
	conf string
	log  *lockedBuffer // stdout and stderr of every run, for failures
	env  []string      // added to the environment of the next runs

	mu  sync.Mutex // guards run
	run *weirRun   // the current run
}

// weirRun is one run of a weirProc: err is set before done is closed.
type weirRun struct {
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
	armed bool // started with env (killpoints, say)
}

func (p *weirProc) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, "run", "-c", p.conf, "--quiet", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if len(p.env) > 0 {
		cmd.Env = append(os.Environ(), p.env...)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start weir: %v", err)
	}
	r := &weirRun{cmd: cmd, done: make(chan struct{}), armed: len(p.env) > 0}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	p.mu.Lock()
	p.run = r
	p.mu.Unlock()
}

func (p *weirProc) current() *weirRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *weirProc) kill() {
	r := p.current()
	r.cmd.Process.Signal(syscall.SIGKILL) // an error means it is gone already
	<-r.done
}

// stop sends SIGTERM (graceful: final checkpoint) and returns the exit
// error.
func (p *weirProc) stop() error {
	r := p.current()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		return errors.New("did not stop within 30s of SIGTERM")
	}
}

// exited reports whether the process ended on its own (a failure).
func (p *weirProc) exited() (error, bool) {
	r := p.current()
	select {
	case <-r.done:
		return r.err, true
	default:
		return nil, false
	}
}

func killTest(t *testing.T, bin string, procs, kills int) {
	c := kafkatest.New(t)
	const inPartitions = 6
	in, out := c.Topic(t, inPartitions), c.Topic(t, 3)
	group := kafkatest.Name("g")
	reader := c.NewReader(t, out)
	root := t.TempDir()

	ps := make([]*weirProc, procs)
	for i := range ps {
		dir := filepath.Join(root, fmt.Sprint(i))
		conf := filepath.Join(root, fmt.Sprintf("weir-%d.yaml", i))
		yaml := kafkaPipelineYAML(filepath.Join(dir, "data"), "exactly_once", c, in, group, out, "200ms")
		if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		ps[i] = &weirProc{t: t, bin: bin, conf: conf, log: new(lockedBuffer)}
	}
	defer func() {
		if t.Failed() {
			for i, p := range ps {
				t.Logf("process %d output:\n%s", i, tail(p.log.bytes(), 3000))
			}
		}
	}()

	// Input arrives while the processes run and die: 150 events every
	// 25 ms until the kills are done.
	var (
		mu     sync.Mutex // guards want, events
		want   int
		events int
	)
	stopFeed := make(chan struct{})
	fed := make(chan struct{})
	var stopOnce sync.Once
	endFeed := func() { stopOnce.Do(func() { close(stopFeed) }); <-fed }
	defer endFeed()
	go func() {
		defer close(fed)
		for {
			select {
			case <-stopFeed:
				return
			case <-time.After(25 * time.Millisecond):
			}
			mu.Lock()
			from, o0 := events, want
			mu.Unlock()
			passed := kafkaInputFrom(t, c, in, from, o0, 150)
			mu.Lock()
			events += 150
			want += passed
			mu.Unlock()
		}
	}()

	for _, p := range ps {
		p.start()
		defer p.kill()
	}
	// Kill only once the group has settled: a process killed inside a
	// rebalance's revoke callback, between its checkpoint and its offset
	// commit, hands its partitions over at the group's older offset (the
	// gap documented in sources/kafka.go). Once the group is stable, a
	// static member restarted within session_timeout takes its own
	// partitions back without a rebalance, which is what this test checks.
	waitGroupStable(t, c, group, procs, in, inPartitions)
	for k := range kills {
		time.Sleep(time.Duration(250+rand.IntN(550)) * time.Millisecond)
		p := ps[rand.IntN(procs)]
		if err, ok := p.exited(); ok {
			t.Fatalf("a weir process exited on its own: %v", err)
		}
		p.kill()
		t.Logf("kill %d: output so far %d", k+1, reader.Len())
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		p.start()
	}
	endFeed()
	mu.Lock()
	total, n := want, events
	mu.Unlock()
	got := reader.WaitFor(t, total, 60*time.Second)
	for i, p := range ps {
		if err := p.stop(); err != nil {
			t.Errorf("process %d: graceful stop: %v", i, err)
		}
	}
	got = reader.Settle(500 * time.Millisecond)
	t.Logf("%d processes, %d kills, %d events in, %d passed the filter, %d read back", procs, kills, n, total, len(got))
	exactlyOnceField(t, got, total)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// lockedBuffer is a bytes.Buffer safe for the child's writer goroutine and
// the test reading it.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// waitGroupStable waits until group is Stable with n members that between
// them own all partitions of topic.
func waitGroupStable(t *testing.T, c *kafkatest.Cluster, group string, n int, topic string, partitions int) {
	t.Helper()
	adm := kadm.NewClient(c.Client(t))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		groups, err := adm.DescribeGroups(ctx, group)
		cancel()
		if err == nil {
			g := groups[group]
			if g.Err == nil && g.State == "Stable" && len(g.Members) == n && len(g.AssignedPartitions()[topic]) == partitions {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s not stable with %d members after 60s (last error %v)", group, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
