package operators

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/redis/rueidis"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

// LookupRedisConfig is a lookup's `table: {redis: {...}}`: rows are Redis
// hashes or strings, fetched for each batch and kept in a bounded cache.
//
//	table:
//	  redis: { url: "redis://127.0.0.1:6379/0", key: "host:{{ host }}", type: hash,
//	           cache: { ttl: 1m, max_entries: 100000 } }
//
// key is a template over the record that gives the Redis key; without
// `{{ }}` it is a prefix, followed by the text of the lookup's key
// (`key: "host:"` with the lookup's `key: host`). When the lookup has a
// key expression, a record whose key is null is a miss without a call to
// Redis. type says what a Redis key holds:
//
//   - hash: the hash's fields are the columns (HMGET of the columns named
//     in the lookup's `fields:`, HGETALL of every field without them). A
//     key that does not exist, or has none of the fields, is a miss;
//   - string: the value is the one column `value`;
//   - json: the value is a JSON object whose members are the columns.
//
// The keys of a batch that are not in the cache are fetched in one round
// trip (MGET for strings, one pipeline of HMGET or HGETALL for hashes),
// never one per record. The cache keeps hits and misses for ttl (wall
// clock), at most max_entries of them (least recently used go first);
// max_entries: 0 turns it off. A key holding another type (a WRONGTYPE
// reply) sends its records to the dead-letter output with reason
// "lookup". When Redis cannot be reached, the batch waits and is retried
// with backoff (up to max_reconnect_delay apart), so the pipeline backs up
// and nothing is dropped; the first failure and the recovery are logged.
type LookupRedisConfig struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS;
	// default redis://127.0.0.1:6379. Its password is never logged.
	URL string `yaml:"url"`
	// Key is the Redis key template. Required.
	Key *pipeline.Template `yaml:"key"`
	// Type is hash (default), string or json.
	Type string `yaml:"type"`
	// Cache bounds the cache.
	Cache LookupRedisCache `yaml:"cache"`
	// InferTypes makes numbers and booleans in hash fields and string
	// values typed values, as parse does; default true.
	InferTypes bool `yaml:"infer_types"`
	// PasswordFile holds the password; it overrides the URL's.
	PasswordFile string `yaml:"password_file"`
	// TLS sets the TLS configuration.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// ConnectTimeout bounds each connection attempt and the first
	// connection at start; default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxReconnectDelay caps the backoff between retries; default 10s.
	MaxReconnectDelay time.Duration `yaml:"max_reconnect_delay"`
}

// LookupRedisCache is the `cache:` of a redis table.
type LookupRedisCache struct {
	// TTL is how long a fetched row (or a miss) is used; default 1m.
	TTL time.Duration `yaml:"ttl"`
	// MaxEntries bounds the cached keys; default 100000; 0: no cache.
	MaxEntries int `yaml:"max_entries"`
}

func newLookupRedisConfig() *LookupRedisConfig {
	return &LookupRedisConfig{URL: "redis://127.0.0.1:6379", Type: "hash", InferTypes: true,
		Cache:          LookupRedisCache{TTL: time.Minute, MaxEntries: 100_000},
		ConnectTimeout: 10 * time.Second, MaxReconnectDelay: 10 * time.Second}
}

func (c *LookupRedisConfig) decode(q yamlPair) error { return decodeTable(q, "redis", c) }

// check validates the options.
func (c *LookupRedisConfig) check() error {
	switch {
	case c.Key == nil:
		return errors.New(`needs ` + "`key:`" + `, a template such as "customer:{{ customer_id }}", or a prefix followed by the lookup's key`)
	case c.Type != "hash" && c.Type != "string" && c.Type != "json":
		return fmt.Errorf("type: %q is not one of hash, string, json", c.Type)
	case c.Cache.MaxEntries < 0 || c.Cache.MaxEntries > 1<<26:
		return fmt.Errorf("cache: max_entries: want 0 to %d, got %d", 1<<26, c.Cache.MaxEntries)
	case c.Cache.MaxEntries > 0 && c.Cache.TTL <= 0:
		return errors.New("cache: ttl: want a positive duration such as 1m (max_entries: 0 turns the cache off)")
	case c.ConnectTimeout < 0 || c.MaxReconnectDelay < 0:
		return errors.New("durations must not be negative")
	}
	if _, err := rueidis.ParseURL(c.URL); err != nil {
		return fmt.Errorf("url %s: %v", connect.RedactURL(c.URL), err)
	}
	return c.TLS.Validate()
}

// checkFields refuses columns a string value does not have.
func (c *LookupRedisConfig) checkFields(f LookupFields) error {
	if c.Type != "string" {
		return nil
	}
	for i, col := range f.Columns {
		if col != "value" {
			return fmt.Errorf("lookup: fields: %s: a redis string has the one column \"value\", not %q", f.Names[i], col)
		}
	}
	return nil
}

// lookupRedis fetches rows for the lookup operator. It is used by the
// operator's goroutine only; roundTrips may be read from any.
type lookupRedis struct {
	client    rueidis.Client
	safeURL   string
	logger    *slog.Logger
	component string
	typ       string
	key       *pipeline.Template
	prefix    bool     // key is constant: a prefix for the lookup key's text
	columns   []string // hash: the fields to HMGET; nil: HGETALL
	infer     bool
	ttl       time.Duration
	cache     *simplelru.LRU[string, *lookupRedisEntry] // nil: off
	maxDelay  time.Duration

	batch   map[string]*lookupRedisEntry // this batch's keys and their rows
	pending []string                     // keys to fetch
	keys    []string                     // per record: its Redis key
	states  []uint8                      // per record: lookupState*
	buf     []byte

	roundTrips atomic.Int64 // calls to Redis that returned (for tests)
	down       bool         // the last call failed: log the recovery
}

// lookupRedisEntry is one key's row: names and values of its columns;
// found is false for a miss. err is set for a key Redis refused (WRONGTYPE).
type lookupRedisEntry struct {
	names []string
	vals  []any
	found bool
	err   error
	at    time.Time
}

// per-record states in processRedis
const (
	lookupStateKey    uint8 = iota // keys[i] is to be looked up
	lookupStateMiss                // null key: a miss
	lookupStateReject              // already sent to the dead-letter output
)

// open connects (retrying within connect_timeout).
func (c *LookupRedisConfig) open(b pipeline.Build, logger *slog.Logger, f LookupFields) (*lookupRedis, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("lookup: table: redis: %w", err)
	}
	opt, err := rueidis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("lookup: table: redis: url %s: %v", connect.RedactURL(c.URL), err)
	}
	if c.PasswordFile != "" {
		if opt.Password, err = connect.ReadSecretFile(c.PasswordFile); err != nil {
			return nil, fmt.Errorf("lookup: table: redis: %w", err)
		}
	}
	if c.TLS != nil {
		if opt.TLSConfig, err = c.TLS.Config(); err != nil {
			return nil, fmt.Errorf("lookup: table: redis: %w", err)
		}
	}
	opt.DisableCache = true // the cache below bounds entries; rueidis' bounds bytes
	opt.DisableRetry = true // fetch retries with backoff itself, and logs the outage
	opt.Dialer.Timeout = connect.StartWait(c.ConnectTimeout)
	opt.ConnWriteTimeout = connect.StartWait(c.ConnectTimeout)
	opt.ClientName = "weir:" + strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, b.Component)
	t := &lookupRedis{safeURL: connect.RedactURL(c.URL), logger: logger, component: b.Component, typ: c.Type,
		key: c.Key.Clone(), prefix: c.Key.IsConstant(), infer: c.InferTypes, ttl: c.Cache.TTL,
		maxDelay: c.MaxReconnectDelay, batch: map[string]*lookupRedisEntry{}}
	if c.Type == "hash" && len(f.Columns) > 0 {
		for _, col := range f.Columns {
			if !slices.Contains(t.columns, col) {
				t.columns = append(t.columns, col)
			}
		}
	}
	if c.Cache.MaxEntries > 0 {
		t.cache, _ = simplelru.NewLRU[string, *lookupRedisEntry](c.Cache.MaxEntries, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connect.StartWait(c.ConnectTimeout))
	defer cancel()
	bo := connect.Backoff{Max: 2 * time.Second}
	for {
		t.client, err = rueidis.NewClient(opt)
		if err == nil {
			err = t.client.Do(ctx, t.client.B().Ping().Build()).Error()
			if err == nil {
				return t, nil
			}
			t.client.Close()
		}
		if _, refused := rueidis.IsRedisErr(err); refused {
			return nil, fmt.Errorf("lookup: table: redis: %s: %w", t.safeURL, err) // AUTH, SELECT: retrying does not help
		}
		d := bo.Next()
		if ctx.Err() != nil || connect.SleepContext(ctx, d) != nil {
			return nil, fmt.Errorf("lookup: table: redis: connect to %s: %w (gave up after connect_timeout)", t.safeURL, err)
		}
		logger.Warn("lookup: connecting to redis failed; retrying", "url", t.safeURL, "in", d, "err", err)
	}
}

func (t *lookupRedis) close() { t.client.Close() }

// redisKey renders r's Redis key; keyText is the lookup key's text (for a
// prefix).
func (t *lookupRedis) redisKey(r *pipeline.Record, keyText string) (string, error) {
	var err error
	t.buf, err = t.key.Render(t.buf[:0], r)
	if err != nil {
		return "", fmt.Errorf("lookup: redis key: %w", err)
	}
	if t.prefix {
		t.buf = append(t.buf, keyText...)
	}
	return string(t.buf), nil
}

// processRedis is Process for a redis table: keys first, one fetch for
// those not cached, then the rows.
func (l *lookup) processRedis(ctx context.Context, b *pipeline.Batch) error {
	t := l.redis
	n := len(b.Records)
	t.keys = slices.Grow(t.keys[:0], n)[:n]
	t.states = slices.Grow(t.states[:0], n)[:n]
	for i, r := range b.Records {
		t.keys[i], t.states[i] = "", lookupStateKey
		keyText := ""
		if l.key != nil {
			k, null, err := l.keyText(r)
			if err != nil {
				b.Reject(r, l.id, "lookup_key", err)
				t.states[i] = lookupStateReject
				continue
			}
			if null {
				t.states[i] = lookupStateMiss
				continue
			}
			keyText = k
		}
		k, err := t.redisKey(r, keyText)
		if err != nil {
			b.Reject(r, l.id, "lookup_key", err)
			t.states[i] = lookupStateReject
			continue
		}
		t.keys[i] = k
	}
	if err := t.fetch(ctx); err != nil {
		return err
	}
	out := b.Records[:0]
	for i, r := range b.Records {
		switch t.states[i] {
		case lookupStateReject:
			continue
		case lookupStateMiss:
			if l.miss(b, r, "", true) {
				out = append(out, r)
			}
			continue
		}
		e := t.batch[t.keys[i]]
		switch {
		case e.err != nil:
			b.Reject(r, l.id, "lookup", fmt.Errorf("lookup: redis key %q: %w", t.keys[i], e.err))
		case e.found:
			l.applyRedis(r.Fields(), e)
			out = append(out, r)
		case l.miss(b, r, t.keys[i], false):
			out = append(out, r)
		}
	}
	clear(b.Records[len(out):])
	b.Records = out
	clear(t.keys)
	return nil
}

// applyRedis sets a row's columns on fs: the named fields, or every column.
func (l *lookup) applyRedis(fs *pipeline.Fields, e *lookupRedisEntry) {
	if len(l.fields.Names) == 0 {
		for i, name := range e.names {
			if e.vals[i] != lookupAbsent {
				fs.Set(name, e.vals[i])
			}
		}
		return
	}
	for i, col := range l.fields.Columns {
		if j := slices.Index(e.names, col); j >= 0 && e.vals[j] != lookupAbsent {
			fs.Set(l.fields.Names[i], e.vals[j])
		}
	}
}

// fetch fills t.batch with the row of every key in t.keys: from the cache,
// or from Redis in one round trip for the rest. It retries while Redis
// cannot be reached, and returns only ctx's error.
func (t *lookupRedis) fetch(ctx context.Context) error {
	clear(t.batch)
	now := time.Now()
	t.pending = t.pending[:0]
	for i, k := range t.keys {
		if t.states[i] != lookupStateKey {
			continue
		}
		if _, ok := t.batch[k]; ok {
			continue
		}
		if t.cache != nil {
			if e, ok := t.cache.Get(k); ok && now.Sub(e.at) < t.ttl {
				t.batch[k] = e
				continue
			}
		}
		t.batch[k] = nil
		t.pending = append(t.pending, k)
	}
	if len(t.pending) == 0 {
		return nil
	}
	bo := connect.Backoff{Max: t.maxDelay}
	for {
		entries, err := t.get(ctx, t.pending)
		if err == nil {
			if t.down {
				t.logger.Info("lookup: redis answers again", "url", t.safeURL)
				t.down = false
			}
			at := time.Now()
			for i, k := range t.pending {
				e := entries[i]
				e.at = at
				t.batch[k] = e
				if t.cache != nil && e.err == nil {
					t.cache.Add(k, e)
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := bo.Next()
		if !t.down || bo.Attempts()%10 == 0 {
			t.logger.Warn("lookup: redis lookup failed; the batch waits and is retried", "url", t.safeURL, "attempt", bo.Attempts(), "in", d, "err", err)
		}
		t.down = true
		if err := connect.SleepContext(ctx, d); err != nil {
			return err
		}
	}
}

// get fetches keys in one round trip. A key Redis refuses has its error
// in its entry; err is for a call that failed as a whole (a lost
// connection), to be retried.
func (t *lookupRedis) get(ctx context.Context, keys []string) ([]*lookupRedisEntry, error) {
	out := make([]*lookupRedisEntry, len(keys))
	if t.typ != "hash" {
		vals, err := t.client.Do(ctx, t.client.B().Mget().Key(keys...).Build()).ToArray()
		if err != nil {
			return nil, err
		}
		t.roundTrips.Add(1)
		if len(vals) != len(keys) {
			return nil, fmt.Errorf("redis: MGET of %d keys answered %d values", len(keys), len(vals))
		}
		for i := range vals {
			out[i] = t.stringEntry(&vals[i])
		}
		return out, nil
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		if t.columns != nil {
			cmds[i] = t.client.B().Hmget().Key(k).Field(t.columns...).Build()
		} else {
			cmds[i] = t.client.B().Hgetall().Key(k).Build()
		}
	}
	res := t.client.DoMulti(ctx, cmds...)
	for _, r := range res {
		if err := r.NonRedisError(); err != nil {
			return nil, err
		}
	}
	t.roundTrips.Add(1)
	for i, r := range res {
		out[i] = t.hashEntry(r)
	}
	return out, nil
}

// stringEntry reads a GET value (string or json).
func (t *lookupRedis) stringEntry(m *rueidis.RedisMessage) *lookupRedisEntry {
	if m.IsNil() {
		return &lookupRedisEntry{}
	}
	s, err := m.ToString()
	if err != nil {
		return &lookupRedisEntry{err: err}
	}
	if t.typ == "string" {
		return &lookupRedisEntry{names: []string{"value"}, vals: []any{t.value(s)}, found: true}
	}
	var fs pipeline.Fields
	if err := fs.ParseJSONObject([]byte(s)); err != nil {
		return &lookupRedisEntry{err: fmt.Errorf("the value is not a JSON object: %v", err)}
	}
	fs.DecodeAll()
	e := &lookupRedisEntry{found: true, names: make([]string, fs.Len()), vals: make([]any, fs.Len())}
	for i := range fs.Len() {
		e.names[i], e.vals[i] = fs.Name(i), fs.Value(i)
	}
	return e
}

// hashEntry reads an HMGET or HGETALL reply.
func (t *lookupRedis) hashEntry(r rueidis.RedisResult) *lookupRedisEntry {
	if t.columns == nil {
		m, err := r.AsStrMap()
		if err != nil {
			return &lookupRedisEntry{err: err}
		}
		if len(m) == 0 {
			return &lookupRedisEntry{}
		}
		e := &lookupRedisEntry{found: true, names: make([]string, 0, len(m))}
		for k := range m {
			e.names = append(e.names, k)
		}
		slices.Sort(e.names) // a hash has no order: sorted, so output is stable
		for _, k := range e.names {
			e.vals = append(e.vals, t.value(m[k]))
		}
		return e
	}
	vals, err := r.ToArray()
	if err != nil {
		return &lookupRedisEntry{err: err}
	}
	e := &lookupRedisEntry{names: t.columns, vals: make([]any, len(t.columns))}
	for i := range e.vals {
		e.vals[i] = lookupAbsent
		if i < len(vals) && !vals[i].IsNil() {
			if s, err := vals[i].ToString(); err == nil {
				e.vals[i], e.found = t.value(s), true
			}
		}
	}
	return e
}

// value types a Redis string when infer_types is on.
func (t *lookupRedis) value(s string) any {
	if t.infer {
		if v, ok := parseInferValue(s); ok {
			return v
		}
	}
	return s
}
