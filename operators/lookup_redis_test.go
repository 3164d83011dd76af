package operators

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/weirhq/weir/internal/testservices"
	"github.com/weirhq/weir/pipeline"
)

// redisTestClient connects to url for a test's set-up; the keys under
// prefix are deleted when the test ends.
func redisTestClient(t testing.TB, url, prefix string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				break
			}
			if len(e.Elements) > 0 {
				c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
		c.Close()
	})
	return c
}

func redisDo(t testing.TB, c rueidis.Client, args ...string) {
	t.Helper()
	if err := c.Do(context.Background(), c.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

func TestLookupRedisHash(t *testing.T) {
	url := testservices.Redis(t)
	p := testservices.Name("weirlookup") + ":"
	c := redisTestClient(t, url, p)
	redisDo(t, c, "HSET", p+"web-1", "rack", "r1", "dc", "eu-west", "weight", "10")
	redisDo(t, c, "HSET", p+"web-2", "rack", "r2")
	redisDo(t, c, "SET", p+"str", "not a hash")

	op := lookupOp(t, `{table: {redis: {url: "`+url+`", key: "`+p+`{{ host }}"}}, key: host, fields: {rack: rack, datacenter: dc, w: weight}, on_miss: dead_letter}`)
	l := op.(*lookup)
	out, dead := lookupRun(t, op, `{"host":"web-1"}`, `{"host":"web-2"}`, `{"host":"web-1"}`, `{"host":"nope"}`, `{"n":1}`, `{"host":"str"}`)
	want := `{"host":"web-1","rack":"r1","datacenter":"eu-west","w":10}
{"host":"web-2","rack":"r2"}
{"host":"web-1","rack":"r1","datacenter":"eu-west","w":10}`
	wantDead := `lookup_miss: lookup: no row for key "` + p + `nope"
lookup_miss: lookup: the key host is null
lookup: lookup: redis key "` + p + `str": WRONGTYPE Operation against a key holding the wrong kind of value`
	if got := strings.Join(out, "\n"); got != want || strings.Join(dead, "\n") != wantDead {
		t.Fatalf("got\n%s\ndead\n%s\nwant\n%s\ndead\n%s", got, strings.Join(dead, "\n"), want, wantDead)
	}
	if n := l.redis.roundTrips.Load(); n != 1 {
		t.Fatalf("%d round trips for one batch; want 1", n)
	}
	// The next batch is served from the cache, hits and misses alike.
	redisDo(t, c, "HSET", p+"web-1", "rack", "r100")
	out, _ = lookupRun(t, op, `{"host":"web-1"}`, `{"host":"nope"}`)
	if n := l.redis.roundTrips.Load(); n != 1 || out[0] != `{"host":"web-1","rack":"r1","datacenter":"eu-west","w":10}` {
		t.Fatalf("%d round trips, %s; want 1 and the cached row", n, out)
	}

	// Every field, sorted, with HGETALL; a prefix key.
	op = lookupOp(t, `{table: {redis: {url: "`+url+`", key: "`+p+`", infer_types: false, cache: {max_entries: 0}}}, key: host}`)
	out, _ = lookupRun(t, op, `{"host":"web-1"}`, `{"host":"nope"}`)
	if got := strings.Join(out, "\n"); got != `{"host":"web-1","dc":"eu-west","rack":"r100","weight":"10"}`+"\n"+`{"host":"nope"}` {
		t.Fatalf("HGETALL: %s", got)
	}
}

func TestLookupRedisStringAndJSON(t *testing.T) {
	url := testservices.Redis(t)
	p := testservices.Name("weirlookup") + ":"
	c := redisTestClient(t, url, p)
	redisDo(t, c, "SET", p+"s:1", "42")
	redisDo(t, c, "SET", p+"j:1", `{"name":"Ada","tier":"gold","n":3}`)
	redisDo(t, c, "SET", p+"j:2", `not json`)

	op := lookupOp(t, `{table: {redis: {url: "`+url+`", key: "`+p+`s:{{ id }}", type: string}}, fields: {score: value}}`)
	out, _ := lookupRun(t, op, `{"id":1}`, `{"id":2}`)
	if got := strings.Join(out, " "); got != `{"id":1,"score":42} {"id":2}` {
		t.Fatalf("string: %s", got)
	}
	op = lookupOp(t, `{table: {redis: {url: "`+url+`", key: "`+p+`j:{{ id }}", type: json}}, key: id}`)
	out, dead := lookupRun(t, op, `{"id":1}`, `{"id":2}`, `{"id":3}`)
	if got := strings.Join(out, " "); got != `{"id":1,"name":"Ada","tier":"gold","n":3} {"id":3}` || len(dead) != 1 || !strings.HasPrefix(dead[0], "lookup: ") {
		t.Fatalf("json: %s, dead %q", got, dead)
	}
	if n := op.(*lookup).redis.roundTrips.Load(); n != 1 {
		t.Fatalf("%d round trips (MGET); want 1", n)
	}
}

// TestLookupRedisCacheBounds: entries expire after ttl and at most
// max_entries are kept.
func TestLookupRedisCacheBounds(t *testing.T) {
	url := testservices.Redis(t)
	p := testservices.Name("weirlookup") + ":"
	c := redisTestClient(t, url, p)
	for i := range 10 {
		redisDo(t, c, "SET", fmt.Sprintf("%s%d", p, i), fmt.Sprint(i))
	}
	op := lookupOp(t, `{table: {redis: {url: "`+url+`", key: "`+p+`", type: string, cache: {ttl: 200ms, max_entries: 4}}}, key: id}`)
	l := op.(*lookup)
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf(`{"id":%d}`, i))
	}
	lookupRun(t, op, lines...)
	if n := l.redis.cache.Len(); n != 4 {
		t.Fatalf("%d cached; want max_entries 4", n)
	}
	redisDo(t, c, "SET", p+"9", "nine")
	out, _ := lookupRun(t, op, `{"id":9}`)
	if out[0] != `{"id":9,"value":9}` || l.redis.roundTrips.Load() != 1 {
		t.Fatalf("cached: %s after %d round trips", out, l.redis.roundTrips.Load())
	}
	time.Sleep(250 * time.Millisecond)
	out, _ = lookupRun(t, op, `{"id":9}`)
	if out[0] != `{"id":9,"value":"nine"}` || l.redis.roundTrips.Load() != 2 {
		t.Fatalf("after ttl: %s after %d round trips", out, l.redis.roundTrips.Load())
	}
}

// throwawayRedis runs a redis-server of the test's own on a free port
// (never the shared one on 6379), and returns its port and a function
// that stops it (SIGKILL) or starts it again on the same port.
func throwawayRedis(t *testing.T) (port int, stop, start func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testservices.Required() {
			t.Fatal("redis-server not on PATH [WEIR_REQUIRE_SERVICES=1]")
		}
		t.Skip("redis-server not on PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	var cmd *exec.Cmd
	start = func() {
		t.Helper()
		cmd = exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testservices.Eventually(t, 10*time.Second, "redis-server listens", func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	stop = func() {
		if cmd != nil && cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
			cmd = nil
		}
	}
	start()
	t.Cleanup(stop)
	_ = filepath.Join
	return port, stop, start
}

// TestLookupRedisDownBacksUp: with Redis down, Process waits and retries
// instead of dropping or passing records unenriched; once Redis is back
// the batch completes.
func TestLookupRedisDownBacksUp(t *testing.T) {
	port, stop, start := throwawayRedis(t)
	url := fmt.Sprintf("redis://127.0.0.1:%d", port)
	c := redisTestClient(t, url, "h:")
	redisDo(t, c, "HSET", "h:web-1", "rack", "r1")
	c2, err := loadOperator(t, "      - lookup: "+`{table: {redis: {url: "`+url+`", key: "h:", max_reconnect_delay: 200ms, connect_timeout: 1s, cache: {max_entries: 0}}}, key: host, fields: {rack: rack}, on_miss: dead_letter}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	bd, logs := testservices.Build(t, "p/operators[0]/lookup", 1024, pipeline.ExactlyOnce)
	op, err := c2.NewOperator(bd)
	if err != nil {
		t.Fatal(err)
	}
	defer op.(*lookup).Close(context.Background())
	if out, _ := lookupRun(t, op, `{"host":"web-1"}`); len(out) != 1 || out[0] != `{"host":"web-1","rack":"r1"}` {
		t.Fatalf("before: %q", out)
	}
	stop()
	b := jsonBatch(t, `{"host":"web-1"}`, `{"host":"web-1"}`)
	done := make(chan error, 1)
	go func() { done <- op.Process(context.Background(), b) }()
	select {
	case err := <-done:
		t.Fatalf("Process returned (%v) while Redis was down", err)
	case <-time.After(1500 * time.Millisecond):
	}
	start()
	redisDo(t, redisTestClient(t, url, "h:"), "HSET", "h:web-1", "rack", "r1-again")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Process still waiting after Redis came back")
	}
	if !strings.Contains(logs.String(), "redis lookup failed; the batch waits and is retried") || !strings.Contains(logs.String(), "redis answers again") {
		t.Fatalf("the outage is not logged: %s", logs.String())
	}
	if len(b.Records) != 2 || len(b.Dead) != 0 || b.Records[1].Get("rack") != "r1-again" {
		t.Fatalf("after the outage: %d records, %d dead, rack %v", len(b.Records), len(b.Dead), b.Records[1].Get("rack"))
	}
	// A cancelled context ends the wait with its error.
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := op.Process(ctx, jsonBatch(t, `{"host":"web-2"}`)); err == nil {
		t.Fatal("Process returned no error with Redis down and the context done")
	}
}

// TestLookupRedisStartWaits: a Redis that does not answer at start fails
// the start after connect_timeout, naming the URL without its password.
func TestLookupRedisStartWaits(t *testing.T) {
	port, stop, _ := throwawayRedis(t)
	stop()
	c, err := loadOperator(t, fmt.Sprintf("      - lookup: {table: {redis: {url: \"redis://u:s3cret@127.0.0.1:%d\", key: \"h:\", connect_timeout: 500ms}}, key: host}\n", port))
	if err != nil {
		t.Fatal(err)
	}
	b, logs := testservices.Build(t, "p/operators[0]/lookup", 1024, pipeline.ExactlyOnce)
	_, err = c.NewOperator(b)
	if err == nil || !strings.Contains(err.Error(), "gave up after connect_timeout") || strings.Contains(err.Error()+logs.String(), "s3cret") {
		t.Fatalf("got %v\nlogs %s", err, logs.String())
	}
}
