package crashgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"
)

// Output is what a run left behind, in the terms of Expected.
type Output struct {
	Sinks []map[string]int
	Dead  map[string]int
	// Windows holds, per file sink of window results, each window's
	// results in the order the file holds them.
	Windows []map[string][]string
	// Rows holds, per file sink of records, the i of each output file
	// (its parts in order) in the order the file holds them.
	Rows []map[string][]int
	// Problems are lines that do not parse (torn), files that cannot be
	// read, and fields that disagree with where they were found.
	Problems []string
}

// Read collects the output of a run of c at p; pg is needed for
// postgres sinks.
func Read(ctx context.Context, c *Config, p Paths, pg *pgx.Conn) (*Output, error) {
	out := &Output{Dead: map[string]int{}}
	for j, s := range c.Sinks {
		out.Sinks = append(out.Sinks, map[string]int{})
		out.Windows = append(out.Windows, map[string][]string{})
		out.Rows = append(out.Rows, map[string][]int{})
		var err error
		switch s.Kind {
		case SinkFile:
			err = out.readFileSink(c, j, p.SinkDir(j))
		case SinkParquet:
			err = out.readParquetSink(c, j, p.SinkDir(j))
		case SinkPostgres:
			err = out.readPostgres(ctx, c, j, pg, p.Tables[j])
		}
		if err != nil {
			return nil, err
		}
	}
	return out, out.readDead(p.DeadPath())
}

func (o *Output) problem(format string, args ...any) {
	o.Problems = append(o.Problems, fmt.Sprintf(format, args...))
}

// fileName is a file sink's output name: k<key>.jsonl or k<key>-000001.jsonl.
var fileName = regexp.MustCompile(`^k([^-/]+)(-\d{6})?\.jsonl$`)

func (o *Output) readFileSink(c *Config, j int, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == dir {
				return filepath.SkipDir
			}
			return err
		}
		if !d.IsDir() && !strings.HasSuffix(d.Name(), ".weir-lock") { // output locks, not output
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files) // parts in order
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		date, base := filepath.Split(rel)
		m := fileName.FindStringSubmatch(base)
		if m == nil {
			o.problem("sink %d: unexpected file %s", j, rel)
			continue
		}
		key := m[1]
		group := strings.TrimSuffix(date, "/") + "k" + key
		err := eachLine(path, func(n int, line []byte) {
			var v map[string]any
			if err := json.Unmarshal(line, &v); err != nil {
				o.problem("sink %d: %s:%d does not parse (torn?): %.120q", j, rel, n, line)
				return
			}
			if field := str(v["k"]); field != key {
				o.problem("sink %d: %s:%d has k=%s", j, rel, n, field)
			}
			if c.Window != nil {
				item := windowItem(v, key)
				o.Sinks[j][item]++
				wk := windowItemKey(item)
				o.Windows[j][wk] = append(o.Windows[j][wk], item)
				return
			}
			i, ok := v["i"].(float64)
			if !ok {
				o.problem("sink %d: %s:%d has no i: %.120q", j, rel, n, line)
				return
			}
			item := rowItem(c, int64(i), key, v["j"])
			if date != "" {
				item += " d=" + strings.TrimSuffix(date, "/")
			}
			o.Sinks[j][item]++
			o.Rows[j][group] = append(o.Rows[j][group], int(i))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func rowItem(c *Config, i int64, key string, j any) string {
	item := fmt.Sprintf("i=%d k=%s", i, key)
	if c.Map {
		item += " j=" + num(j)
	}
	return item
}

func windowItem(v map[string]any, key string) string {
	return fmt.Sprintf("w=%s k=%s %s n=%s s=%s mx=%s mn=%s", str(v["window_start"]), key, str(v["firing"]), num(v["n"]), num(v["s"]), num(v["mx"]), num(v["mn"]))
}

// str is a JSON string value, nullKey for null or absent.
func str(v any) string {
	if v == nil {
		return nullKey
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// num formats a JSON number as the oracle does (integers without a
// fraction).
func num(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return nullKey
	}
	return fmt.Sprint(v)
}

func eachLine(path string, fn func(n int, line []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		fn(n, sc.Bytes())
	}
	return sc.Err()
}

type parquetRow struct {
	I int64 `parquet:"i"`
}

type parquetRowJ struct {
	I int64 `parquet:"i"`
	J int64 `parquet:"j"`
}

type parquetWindow struct {
	WindowStart string  `parquet:"window_start"`
	K           string  `parquet:"k"`
	N           int64   `parquet:"n"`
	S           float64 `parquet:"s"`
	Mx          int64   `parquet:"mx"`
	Mn          int64   `parquet:"mn"`
	Firing      string  `parquet:"firing"`
}

func (o *Output) readParquetSink(c *Config, j int, dir string) error {
	parts, err := filepath.Glob(filepath.Join(dir, "*", "*"))
	if err != nil {
		return err
	}
	for _, path := range parts {
		rel, _ := filepath.Rel(dir, path)
		part, name := filepath.Split(rel)
		key, ok := strings.CutPrefix(strings.TrimSuffix(part, "/"), "k=")
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".parquet") {
			continue // in progress, not committed
		}
		if !ok {
			o.problem("sink %d: unexpected directory %s", j, part)
			continue
		}
		switch {
		case c.Window != nil:
			rows, err := parquet.ReadFile[parquetWindow](path)
			if err != nil {
				o.problem("sink %d: %s: %v", j, rel, err)
				continue
			}
			for _, r := range rows {
				if r.K != key {
					o.problem("sink %d: %s has k=%s", j, rel, r.K)
				}
				o.Sinks[j][windowItem(map[string]any{"window_start": r.WindowStart, "firing": r.Firing,
					"n": float64(r.N), "s": r.S, "mx": float64(r.Mx), "mn": float64(r.Mn)}, key)]++
			}
		case c.Map:
			rows, err := parquet.ReadFile[parquetRowJ](path)
			if err != nil {
				o.problem("sink %d: %s: %v", j, rel, err)
				continue
			}
			for _, r := range rows {
				o.Sinks[j][rowItem(c, r.I, key, float64(r.J))]++
			}
		default:
			rows, err := parquet.ReadFile[parquetRow](path)
			if err != nil {
				o.problem("sink %d: %s: %v", j, rel, err)
				continue
			}
			for _, r := range rows {
				o.Sinks[j][rowItem(c, r.I, key, nil)]++
			}
		}
	}
	return nil
}

func (o *Output) readPostgres(ctx context.Context, c *Config, j int, pg *pgx.Conn, table string) error {
	if c.Window != nil {
		rows, err := pg.Query(ctx, "SELECT window_start, k, n, s, mx, mn, firing FROM "+table)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var start, firing string
			var k *string
			var n, mx, mn int64
			var s float64
			if err := rows.Scan(&start, &k, &n, &s, &mx, &mn, &firing); err != nil {
				return err
			}
			key := nullKey
			if k != nil {
				key = *k
			}
			o.Sinks[j][windowItem(map[string]any{"window_start": start, "firing": firing,
				"n": float64(n), "s": s, "mx": float64(mx), "mn": float64(mn)}, key)]++
		}
		return rows.Err()
	}
	rows, err := pg.Query(ctx, "SELECT i, k, j FROM "+table)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var i int64
		var k *string
		var jv *int64
		if err := rows.Scan(&i, &k, &jv); err != nil {
			return err
		}
		key := nullKey
		if k != nil {
			key = *k
		}
		var jf any
		if jv != nil {
			jf = float64(*jv)
		}
		o.Sinks[j][rowItem(c, i, key, jf)]++
	}
	return rows.Err()
}

var lineI = regexp.MustCompile(`"i":(\d+)`)

func (o *Output) readDead(path string) error {
	err := eachLine(path, func(n int, line []byte) {
		var d struct {
			Reason, Component, Value string
			Record                   map[string]any // a record without bytes (window results)
		}
		if err := json.Unmarshal(line, &d); err != nil {
			o.problem("dead letters: line %d does not parse (torn?): %.120q", n, line)
			return
		}
		v := d.Record
		item := "?" + d.Value
		if v == nil {
			_ = json.Unmarshal([]byte(d.Value), &v)
		}
		if v["window_start"] != nil {
			item = fmt.Sprintf("w=%s %s n=%s", str(v["window_start"]), str(v["firing"]), num(v["n"]))
		} else if m := lineI.FindStringSubmatch(d.Value); m != nil {
			item = "i=" + m[1]
		}
		o.Dead[d.Component+" "+d.Reason+" "+item]++
	})
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// Complete reports whether every expected item and dead letter is there
// at least once (a followed source is done).
func Complete(e *Expected, o *Output) bool {
	for j, want := range e.Sinks {
		for item := range want {
			if o.Sinks[j][item] == 0 {
				return false
			}
		}
	}
	for d := range e.Dead {
		if o.Dead[d] == 0 {
			return false
		}
	}
	return true
}

// Check compares a run's output with the expected one and returns what
// is wrong (all of it: callers shorten it to print). Under exactly_once every item and dead letter is there exactly
// as often as expected, and file sinks hold each key's records and each
// window's results in order; under at_least_once each is there at least
// once and nothing else is. Lines must never be torn. cut is the number
// of kills when the input is stdin: a kill loses what the killed run had
// read but not yet logged, so the lines missing must form at most cut
// runs of consecutive input lines, and a line is either there with
// everything it causes or not at all (under exactly_once, where stdin goes
// through the WAL; under at_least_once what the sinks had not flushed is
// lost, sink by sink, so only unexpected and torn lines are checked).
func Check(c *Config, e *Expected, o *Output, cut int) []string {
	probs := slices.Clone(o.Problems)
	exact := c.Guarantee == "exactly_once"
	compare := func(what string, want, got map[string]int) {
		var missing, doubled, extra []string
		for item, n := range want {
			switch g := got[item]; {
			case g == 0 && (c.Source != SourceStdin || cut == 0):
				missing = append(missing, item)
			case g > n && exact:
				doubled = append(doubled, fmt.Sprintf("%s (%d×, want %d)", item, g, n))
			case g > 0 && g < n && exact:
				missing = append(missing, fmt.Sprintf("%s (%d×, want %d)", item, g, n))
			}
		}
		for item := range got {
			if want[item] == 0 {
				extra = append(extra, fmt.Sprintf("%s (%d×)", item, got[item]))
			}
		}
		for _, l := range []struct {
			label string
			items []string
		}{{"missing", missing}, {"doubled", doubled}, {"unexpected", extra}} {
			if len(l.items) > 0 {
				sort.Strings(l.items)
				probs = append(probs, fmt.Sprintf("%s: %d %s, e.g. %s", what, len(l.items), l.label, strings.Join(l.items[:min(5, len(l.items))], "; ")))
			}
		}
	}
	for j := range c.Sinks {
		compare(fmt.Sprintf("sink %d (%s)", j, c.Sinks[j].Kind), e.Sinks[j], o.Sinks[j])
	}
	dead := o.Dead
	if c.Source == SourceStdin {
		dead = withoutCutLines(c, e, o.Dead, cut)
	}
	compare("dead letters", e.Dead, dead)
	if exact && c.Source != SourceFollow { // a followed file and its rotated copies may interleave
		probs = append(probs, checkOrder(c, e, o)...)
	}
	if c.Source == SourceStdin && exact && e.ByLine != nil {
		probs = append(probs, checkCut(e, o, cut)...)
	}
	return probs
}

// withoutCutLines drops from stdin's dead letters the rest of a line a
// killed run had begun to read: the next run reads it as a line of its
// own, which does not parse. There is at most one per kill.
func withoutCutLines(c *Config, e *Expected, dead map[string]int, cut int) map[string]int {
	prefix := c.component(opParse) + " parse "
	out := map[string]int{}
	for d, n := range dead {
		if strings.HasPrefix(d, prefix) && e.Dead[d] == 0 && cut > 0 {
			drop := min(n, cut)
			cut -= drop
			if n -= drop; n == 0 {
				continue
			}
		}
		out[d] = n
	}
	return out
}

// checkOrder: records in file sinks by increasing i per file, window
// results in firing order per window.
func checkOrder(c *Config, e *Expected, o *Output) []string {
	var probs []string
	for j, s := range c.Sinks {
		if s.Kind != SinkFile {
			continue
		}
		for group, is := range o.Rows[j] {
			if !slices.IsSorted(is) {
				probs = append(probs, fmt.Sprintf("sink %d: %s holds its records out of input order", j, group))
			}
		}
		for wk, got := range o.Windows[j] {
			if want := e.Windows[wk]; !slices.Equal(got, want) {
				probs = append(probs, fmt.Sprintf("sink %d: %s fired %v, want %v", j, wk, got, want))
			}
		}
	}
	return probs
}

// checkCut checks the lines of a stdin input that several runs shared.
func checkCut(e *Expected, o *Output, cut int) []string {
	var probs []string
	lines := make([]int, 0, len(e.ByLine))
	for i := range e.ByLine {
		lines = append(lines, i)
	}
	slices.Sort(lines)
	gaps, lost := 0, 0
	inGap := false
	for _, i := range lines {
		seen := 0
		for _, item := range e.ByLine[i] {
			if seenItem(o, item) {
				seen++
			}
		}
		switch {
		case seen == 0:
			lost++
			if !inGap {
				gaps++
			}
			inGap = true
		case seen < len(e.ByLine[i]):
			probs = append(probs, fmt.Sprintf("line %d: only %d of %v", i, seen, e.ByLine[i]))
			inGap = false
		default:
			inGap = false
		}
	}
	if gaps > cut {
		probs = append(probs, fmt.Sprintf("stdin: %d lines lost in %d runs, more than the %d kills can explain", lost, gaps, cut))
	}
	return probs
}

func seenItem(o *Output, item string) bool {
	where, what, _ := strings.Cut(item, " ")
	if where == "dead" {
		return o.Dead[what] > 0
	}
	j, _ := strconv.Atoi(strings.TrimPrefix(where, "s"))
	return o.Sinks[j][what] > 0
}
