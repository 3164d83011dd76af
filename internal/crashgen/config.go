package crashgen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Source kinds.
const (
	SourceFile     = "file"     // finite files, read to their end
	SourceFollow   = "follow"   // one followed file, written and rotated during the run
	SourceStdin    = "stdin"    // a pipe shared by every run
	SourceGenerate = "generate" // the generate source, paced by rate
)

// Sink kinds.
const (
	SinkFile     = "file"
	SinkParquet  = "parquet"
	SinkPostgres = "postgres"
)

// Config is one generated pipeline and its input.
type Config struct {
	Seed   uint64
	Source string
	// Files is how many input files a finite file source reads.
	Files int
	// Rotation of a followed file: "create" (rename, then a new file) or
	// "copytruncate"; Rotations is how many happen while it is written.
	Rotation  string
	Rotations int
	// GlobInterval and PollInterval of a followed file.
	GlobInterval, PollInterval time.Duration
	// WriteFor is how long writing a followed file (or a paced generate
	// source) takes.
	WriteFor time.Duration

	Records int // input lines (or generated records)
	Keys    int // distinct values of k
	// Malformed lines are not JSON; NoKey records lack k, NoTS lack ts.
	Malformed, NoKey, NoTS int
	StepMS, JitterMS       int // event-time step between lines; how far back a jittered line goes
	JitterEvery            int // one line in JitterEvery is jittered

	Guarantee          string
	BatchSize          int
	CheckpointInterval time.Duration

	FilterMod, FilterRem int // filter: drop i % FilterMod == FilterRem; FilterMod 0: no filter
	Map                  bool
	Window               *Window
	Sinks                []Sink

	Kills              int
	MinDelay, MaxDelay time.Duration
}

// Window is a tumbling (Slide == Size) or hopping window over k, all in
// whole seconds, run by Parallelism keyed instances.
type Window struct {
	Size, Slide, Watermark, Lateness int
	Parallelism                      int
}

// Sink is one sink of the pipeline.
type Sink struct {
	Kind         string
	MaxOpenFiles int   // file, parquet
	MaxBytes     int64 // file: max_bytes; parquet: max_file_bytes; 0: none
	DatePath     bool  // file, raw records: {{ date(ts) }}/k{{ k }}.jsonl
	Upsert       bool  // postgres, windows: upsert_on [window_start, k]
}

// Generate draws the configuration of seed. The same seed gives the same
// configuration and input on every machine.
func Generate(seed uint64) *Config {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	c := &Config{Seed: seed}
	switch x := r.IntN(100); {
	case x < 35:
		c.Source = SourceFile
	case x < 60:
		c.Source = SourceFollow
	case x < 75:
		c.Source = SourceStdin
	default:
		c.Source = SourceGenerate
	}
	switch r.IntN(4) { // keys: one, a few, tens, up to 200
	case 0:
		c.Keys = 1
	case 1:
		c.Keys = 2 + r.IntN(9)
	case 2:
		c.Keys = 11 + r.IntN(54)
	default:
		c.Keys = 65 + r.IntN(136)
	}
	c.StepMS = 10 * (1 + r.IntN(10))
	switch c.Source {
	case SourceFile:
		c.Files = 1 + r.IntN(3)
		c.Records = 2000 + r.IntN(18000)
	case SourceFollow:
		c.Records = 1000 + r.IntN(5000)
		c.Rotation = []string{"create", "copytruncate"}[r.IntN(2)]
		c.Rotations = 1 + r.IntN(4)
		c.GlobInterval = time.Duration(50+r.IntN(250)) * time.Millisecond
		c.PollInterval = time.Duration(10+r.IntN(90)) * time.Millisecond
		c.WriteFor = time.Duration(1000+r.IntN(1500)) * time.Millisecond
	case SourceStdin:
		c.Records = 2000 + r.IntN(18000)
	case SourceGenerate:
		c.Records = 3000 + r.IntN(27000)
		c.WriteFor = time.Duration(800+r.IntN(2000)) * time.Millisecond
		c.StepMS = 7 // the generate source's own spacing
	}
	if c.Source != SourceGenerate {
		c.Malformed, c.NoKey, c.NoTS = r.IntN(5), r.IntN(5), r.IntN(4)
		if r.IntN(2) == 0 {
			c.JitterMS = 10 * (1 + r.IntN(1500)) // up to 15 s back
			c.JitterEvery = 2 + r.IntN(30)
		}
	}
	c.Guarantee = "exactly_once"
	if r.IntN(10) < 3 {
		c.Guarantee = "at_least_once"
	}
	c.BatchSize = []int{1, 3, 16, 64, 256, 1024}[r.IntN(6)]
	if c.BatchSize < 16 { // a few hundred records a second: keep the run short
		c.Records = min(c.Records, 1500+r.IntN(1500))
	}
	c.CheckpointInterval = time.Duration(10+r.IntN(490)) * time.Millisecond
	if r.IntN(2) == 0 {
		c.FilterMod = 2 + r.IntN(8)
		c.FilterRem = r.IntN(c.FilterMod)
	}
	c.Map = r.IntN(2) == 0
	// Windows need one split and input that every run reads in full:
	// one finite file or generate (stdin loses what a killed run had read
	// but not logged, which changes window values).
	if (c.Source == SourceGenerate || c.Source == SourceFile && c.Files == 1) && r.IntN(100) < 45 {
		w := &Window{Size: []int{1, 2, 5, 10, 30, 60}[r.IntN(6)], Watermark: []int{0, 1, 2, 5}[r.IntN(4)], Lateness: []int{0, 0, 1, 5, 10}[r.IntN(5)]}
		w.Slide = w.Size
		if w.Size > 1 && r.IntN(3) == 0 { // hopping
			w.Slide = w.Size / (2 + r.IntN(2))
			if w.Slide == 0 || w.Size%w.Slide != 0 {
				w.Slide = 1
			}
		}
		c.Window = w
		if c.Source == SourceFile && r.IntN(4) > 0 {
			// Out of order around the window's horizon, so that records
			// come late (re-firing) and too late (dead letters).
			horizon := (w.Size + w.Watermark + w.Lateness) * 1000
			c.JitterMS = 10 * (1 + r.IntN(horizon*3/20))
			c.JitterEvery = 2 + r.IntN(20)
		}
	}
	for range 1 + r.IntN(3) {
		s := Sink{}
		switch x := r.IntN(100); {
		case x < 55:
			s.Kind = SinkFile
			s.MaxOpenFiles = 1 + r.IntN(64)
			if r.IntN(10) < 3 {
				s.MaxBytes = int64(2000 + r.IntN(48000))
			}
			s.DatePath = c.Window == nil && c.Source != SourceGenerate && r.IntN(10) < 3
		case x < 80:
			s.Kind = SinkParquet
			s.MaxOpenFiles = 1 + r.IntN(64)
			if r.IntN(10) < 3 {
				s.MaxBytes = int64(4096 + r.IntN(60000))
			}
		default:
			s.Kind = SinkPostgres
			s.Upsert = c.Window != nil && c.NoKey == 0 && r.IntN(2) == 0
		}
		c.Sinks = append(c.Sinks, s)
	}
	if c.Keys > 32 { // every checkpoint commits a part per key: keep the run short
		c.Records = min(c.Records, 6000)
	}
	c.Kills = 1 + r.IntN(8)
	c.MinDelay = 5 * time.Millisecond
	c.MaxDelay = time.Duration(60+r.IntN(300)) * time.Millisecond
	// Drawn last, so that what is drawn above stays what it was for a seed.
	if r.IntN(2) == 0 { // few open files for many: eviction all the time
		for j := range c.Sinks {
			if c.Sinks[j].MaxOpenFiles > 0 {
				c.Sinks[j].MaxOpenFiles = 1 + r.IntN(4)
			}
		}
	}
	if c.Window != nil {
		c.Window.Parallelism = 1 + r.IntN(4)
	}
	c.Kills += r.IntN(5)
	return c
}

// Paths are where a run of the configuration lives.
type Paths struct {
	Dir string // data_dir and outputs: Dir/data, Dir/out/s<j>, Dir/out/dead.jsonl
	In  string // input files
	// DSN and Tables (one per sink; "" for other kinds) for postgres sinks;
	// CommitsTable is their commits table.
	DSN          string
	Tables       []string
	CommitsTable string
}

// SinkDir is the output directory of sink j.
func (p Paths) SinkDir(j int) string { return fmt.Sprintf("%s/out/s%d", p.Dir, j) }

// DeadPath is the dead-letter file.
func (p Paths) DeadPath() string { return p.Dir + "/out/dead.jsonl" }

// pipelineName is the generated pipeline's name, the first part of every
// dead letter's component.
const pipelineName = "gen"

// epochMS is 2026-01-01T00:00:00Z in unix ms: the generate source's
// record 0, and the base the map operator counts generated records from.
const epochMS = 1767225600000

// operator kinds, in pipeline order.
const (
	opParse  = "parse"
	opNumber = "number" // generate: i and k from the event time
	opFilter = "filter"
	opMap    = "map"
	opWindow = "window"
)

// operators lists the pipeline's operators in order.
func (c *Config) operators() []string {
	var ops []string
	if c.Source == SourceGenerate {
		ops = append(ops, opNumber)
	} else {
		ops = append(ops, opParse)
	}
	if c.FilterMod > 0 {
		ops = append(ops, opFilter)
	}
	if c.Map {
		ops = append(ops, opMap)
	}
	if c.Window != nil {
		ops = append(ops, opWindow)
	}
	return ops
}

// component is the dead-letter component name of operator kind op.
func (c *Config) component(op string) string {
	for i, o := range c.operators() {
		if o == op {
			return fmt.Sprintf("%s/operators[%d]/%s", pipelineName, i, o)
		}
	}
	return ""
}

func sinkComponent(j int, kind string) string {
	return fmt.Sprintf("%s/sinks[%d]/%s", pipelineName, j, kind)
}

// YAML is the pipeline file of the configuration.
func (c *Config) YAML(p Paths) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# crashgen seed %d", c.Seed)
	w("data_dir: %s/data", p.Dir)
	w("pipelines:")
	w("  - name: %s", pipelineName)
	w("    guarantee: %s", c.Guarantee)
	w("    checkpoint_interval: %s", c.CheckpointInterval)
	w("    batch_size: %d", c.BatchSize)
	w("    sources:")
	switch c.Source {
	case SourceFile:
		w("      - file: { paths: [%q] }", p.In+"/*.log")
	case SourceFollow:
		w("      - file: { paths: [%q], follow: true, glob_interval: %s, poll_interval: %s }", p.In+"/app.log*", c.GlobInterval, c.PollInterval)
	case SourceStdin:
		w("      - stdin: {}")
	case SourceGenerate:
		w("      - generate: { count: %d, rate: %.0f, seed: %d }", c.Records, float64(c.Records)/c.WriteFor.Seconds(), c.Seed%1000)
	}
	w("    operators:")
	number := fmt.Sprintf("int((unix_ms(ts) - %d) / 7)", epochMS)
	for _, op := range c.operators() {
		switch op {
		case opParse:
			w("      - parse: { format: json }")
		case opNumber:
			w("      - map: { i: '%s', k: '\"u\" + string(%s %% %d)' }", number, number, c.Keys)
		case opFilter:
			w("      - filter: 'i %% %d != %d'", c.FilterMod, c.FilterRem)
		case opMap:
			w("      - map: { j: 'i * 3' }")
		case opWindow:
			win := c.Window
			if win.Slide == win.Size {
				w("      - window:")
				w("          tumbling: %ds", win.Size)
			} else {
				w("      - window:")
				w("          hopping: { size: %ds, slide: %ds }", win.Size, win.Slide)
			}
			w("          event_time: ts")
			w("          watermark: %ds", win.Watermark)
			w("          allowed_lateness: %ds", win.Lateness)
			w("          parallelism: %d", max(win.Parallelism, 1))
			w("          group_by: [k]")
			w("          aggregate: { n: count(), s: sum(i), mx: max(i), mn: min(i) }")
		}
	}
	w("    sinks:")
	for j, s := range c.Sinks {
		switch s.Kind {
		case SinkFile:
			path := "k{{ k }}.jsonl"
			if s.DatePath {
				path = "{{ date(ts) }}/k{{ k }}.jsonl"
			}
			extra := ""
			if s.MaxBytes > 0 {
				extra = fmt.Sprintf(", max_bytes: %d", s.MaxBytes)
			}
			w("      - file: { path: '%s/%s', max_open_files: %d%s }", p.SinkDir(j), path, s.MaxOpenFiles, extra)
		case SinkParquet:
			schema := "{ i: int64, k: string }"
			if c.Map {
				schema = "{ i: int64, k: string, j: int64 }"
			}
			if c.Window != nil {
				schema = "{ window_start: string, k: string, n: int64, s: float64, mx: int64, mn: int64, firing: string }"
			}
			extra := ""
			if s.MaxBytes > 0 {
				extra = fmt.Sprintf(", max_file_bytes: %d", s.MaxBytes)
			}
			w("      - parquet: { path: '%s', partition_by: 'k={{ k }}', max_open_files: %d, schema: %s%s }", p.SinkDir(j), s.MaxOpenFiles, schema, extra)
		case SinkPostgres:
			cols := "{ i: i, k: k }"
			if c.Map {
				cols = "{ i: i, k: k, j: j }"
			}
			if c.Window != nil {
				cols = "{ window_start: window_start, k: k, n: n, s: s, mx: mx, mn: mn, firing: firing }"
			}
			extra := ""
			if s.Upsert {
				extra = ", upsert_on: [window_start, k]"
			}
			w("      - postgres: { dsn: %q, table: %s, commits_table: %s, columns: %s%s }", p.DSN, p.Tables[j], p.CommitsTable, cols, extra)
		}
	}
	w("    dead_letter:")
	w("      file: { path: '%s' }", p.DeadPath())
	return b.String()
}

// CreateTable is the SQL that creates postgres sink j's table.
func (c *Config) CreateTable(j int, table string) string {
	if c.Window != nil {
		key := ""
		if c.Sinks[j].Upsert {
			key = ", PRIMARY KEY (window_start, k)"
		}
		return "CREATE TABLE " + table + " (window_start text, k text, n bigint, s double precision, mx bigint, mn bigint, firing text" + key + ")"
	}
	return "CREATE TABLE " + table + " (i bigint, k text, j bigint)"
}

// String is a one-line summary of the configuration.
func (c *Config) String() string {
	src := c.Source
	switch c.Source {
	case SourceFile:
		src = fmt.Sprintf("%d files", c.Files)
	case SourceFollow:
		src = fmt.Sprintf("followed file, %d×%s", c.Rotations, c.Rotation)
	}
	var sinks []string
	for _, s := range c.Sinks {
		sinks = append(sinks, s.Kind)
	}
	win := ""
	if c.Window != nil {
		win = fmt.Sprintf(", window %d/%ds wm %ds late %ds", c.Window.Size, c.Window.Slide, c.Window.Watermark, c.Window.Lateness)
	}
	return fmt.Sprintf("seed %d: %s, %d records, %d keys, %s, batch %d, checkpoint %s%s, sinks %s, %d kills",
		c.Seed, src, c.Records, c.Keys, c.Guarantee, c.BatchSize, c.CheckpointInterval, win, strings.Join(sinks, "+"), c.Kills)
}
