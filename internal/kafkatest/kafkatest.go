// Package kafkatest gives tests a real Kafka cluster to talk to over TCP:
// franz-go's kfake brokers started in the test process (several brokers,
// on loopback ports a child process can reach too), or, when
// WEIR_TEST_KAFKA_BROKERS is set (host:port,host:port), that cluster.
//
//	func TestRoundTrip(t *testing.T) {
//		c := kafkatest.New(t)
//		topic := c.Topic(t, 4)
//		c.ProduceValues(t, topic, []byte(`{"i":1}`))
//		recs := c.ReadCommitted(t, topic, 1)
//		...
//	}
//
// Topic names are unique per call, so tests can share an external cluster.
package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkaconn"
)

// BrokersEnv names the variable that points the tests at a real cluster.
const BrokersEnv = "WEIR_TEST_KAFKA_BROKERS"

// Cluster is a cluster for one test.
type Cluster struct {
	// Brokers are the seed addresses, host:port.
	Brokers []string
	// Fake is the in-process cluster; nil for an external one.
	Fake *kfake.Cluster
	// Admin is an admin client on the cluster (plain connection).
	Admin *kadm.Client

	cl    *kgo.Client
	extra []kgo.Opt // the helper clients' options beyond the brokers (credentials)
}

// New returns the cluster of WEIR_TEST_KAFKA_BROKERS, or starts a kfake
// cluster of three brokers; it is closed when the test ends.
func New(t testing.TB) *Cluster {
	t.Helper()
	if env := os.Getenv(BrokersEnv); env != "" {
		return connect(t, strings.Split(env, ","), nil)
	}
	return NewFake(t)
}

// External reports whether the tests run against WEIR_TEST_KAFKA_BROKERS.
func External() bool { return os.Getenv(BrokersEnv) != "" }

// NewFake always starts a kfake cluster (three brokers unless opts say
// otherwise), for what only it can do: SASL users, TLS, fault injection.
// clientOpts are added to the helper's own clients (credentials).
func NewFake(t testing.TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	return NewFakeWithClient(t, opts, nil)
}

// NewFakeWithClient is NewFake with options for the helper's own clients
// (for a cluster that requires SASL or TLS).
func NewFakeWithClient(t testing.TB, opts []kfake.Opt, clientOpts []kgo.Opt) *Cluster {
	t.Helper()
	all := append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)
	fc, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("kafkatest: start kfake: %v", err)
	}
	t.Cleanup(fc.Close)
	c := connect(t, fc.ListenAddrs(), clientOpts)
	c.Fake = fc
	return c
}

func connect(t testing.TB, brokers []string, extra []kgo.Opt) *Cluster {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, extra...)...)
	if err != nil {
		t.Fatalf("kafkatest: client: %v", err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("kafkatest: brokers %v do not answer: %v", brokers, err)
	}
	return &Cluster{Brokers: brokers, Admin: kadm.NewClient(cl), cl: cl, extra: extra}
}

// BrokerList returns the brokers as a YAML flow list: ["a:1", "b:2"].
func (c *Cluster) BrokerList() string {
	q := make([]string, len(c.Brokers))
	for i, b := range c.Brokers {
		q[i] = fmt.Sprintf("%q", b)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

var seq atomic.Int64

// Name returns a name unique in this process and across runs.
func Name(prefix string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, seq.Add(1), kafkaconn.RandomHex(4))
}

// Topic creates a topic with the given partitions and a unique name.
func (c *Cluster) Topic(t testing.TB, partitions int32) string {
	t.Helper()
	name := Name("weir-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin.CreateTopic(ctx, partitions, -1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("kafkatest: create topic %s: %v", name, err)
	}
	return name
}

// Client returns a client on the cluster with opts added; closed at the
// end of the test.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.extra...), opts...)...)
	if err != nil {
		t.Fatalf("kafkatest: client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Produce writes records (their Topic set to topic when empty) and waits
// for every acknowledgement.
func (c *Cluster) Produce(t testing.TB, topic string, recs ...*kgo.Record) {
	t.Helper()
	if err := c.TryProduce(topic, recs...); err != nil {
		t.Fatal(err)
	}
}

// TryProduce is Produce returning the error, for goroutines other than
// the test's.
func (c *Cluster) TryProduce(topic string, recs ...*kgo.Record) error {
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = topic
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kafkatest: produce to %s: %w", topic, err)
	}
	return nil
}

// ProduceValues writes one record per value, keyed by the value so that
// they spread over the partitions.
func (c *Cluster) ProduceValues(t testing.TB, topic string, values ...[]byte) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Key: v, Value: v}
	}
	c.Produce(t, topic, recs...)
}

// Reader reads a topic from the start as a read_committed consumer, in the
// background, and counts what it sees. It is how a test watches a
// pipeline's committed output grow.
type Reader struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex // guards recs
	recs []*kgo.Record
}

// NewReader starts a read_committed reader of topic (every partition,
// from the start); it stops at the end of the test.
func (c *Cluster) NewReader(t testing.TB, topic string) *Reader {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			var got []*kgo.Record
			fs.EachRecord(func(rec *kgo.Record) { got = append(got, rec) })
			if len(got) > 0 {
				r.mu.Lock()
				r.recs = append(r.recs, got...)
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(r.Stop)
	return r
}

// Stop ends the reader and waits for it.
func (r *Reader) Stop() {
	r.cancel()
	<-r.done
}

// Len returns how many records the reader has seen.
func (r *Reader) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// Records returns a copy of what the reader has seen, in arrival order.
func (r *Reader) Records() []*kgo.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*kgo.Record(nil), r.recs...)
}

// WaitFor waits until the reader has seen at least n records, then for a
// quiet period with nothing new (so duplicates beyond n show up too), and
// returns everything seen. It fails the test after timeout.
func (r *Reader) WaitFor(t testing.TB, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest: saw %d records within %s, want %d", r.Len(), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.Settle(500 * time.Millisecond)
}

// Settle waits until nothing new arrives for quiet, and returns what the
// reader has seen.
func (r *Reader) Settle(quiet time.Duration) []*kgo.Record {
	last, since := r.Len(), time.Now()
	for time.Since(since) < quiet {
		time.Sleep(20 * time.Millisecond)
		if n := r.Len(); n != last {
			last, since = n, time.Now()
		}
	}
	return r.Records()
}

// ReadCommitted reads topic from the start as a read_committed consumer
// until it has at least n records and nothing more arrives for half a
// second; it fails the test after 20 s.
func (c *Cluster) ReadCommitted(t testing.TB, topic string, n int) []*kgo.Record {
	t.Helper()
	r := c.NewReader(t, topic)
	defer r.Stop()
	return r.WaitFor(t, n, 20*time.Second)
}
