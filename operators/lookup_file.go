package operators

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/pipeline"
)

// LookupFileConfig is a lookup's `table: {file: {...}}`: a CSV file with a
// header line, or JSON lines (one object per line), held in memory.
//
//	table:
//	  file: { path: hosts.csv, key: host }   # format from the extension
//
// The file is read whole when the operator starts (a line that does not
// parse stops the start, naming the path and line) and read again when it
// changes: every poll_interval its modification time, size and inode are
// compared with the last read, and a changed file is parsed into a new
// table that replaces the old one at once, between two batches (a batch
// never sees half of each). A file that fails to parse then, or is
// missing, keeps the last good table and is logged. Write the new version
// beside it and rename it over the old one, so that no poll reads it half
// written; a file that changes while it is read is read again at the next
// poll. When a key appears on several lines, the last one wins.
type LookupFileConfig struct {
	// Path is the table file. Required.
	Path string `yaml:"path"`
	// Format is csv or jsonl (json is the same); default from the
	// extension: .csv is csv, .jsonl, .ndjson and .json are JSON lines.
	Format string `yaml:"format"`
	// Key is the column (CSV header name, JSON member) that records are
	// matched on. Required.
	Key string `yaml:"key"`
	// Delimiter separates CSV fields; default ",".
	Delimiter string `yaml:"delimiter"`
	// InferTypes makes CSV numbers and booleans typed values, as parse
	// does; default true. JSON values keep their JSON types.
	InferTypes bool `yaml:"infer_types"`
	// PollInterval is how often the file is checked for a change;
	// default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`

	mu        sync.Mutex   // guards preloaded, preStat
	preloaded *lookupIndex // read by Validate, for the first NewOperator
	preStat   os.FileInfo
}

func newLookupFileConfig() *LookupFileConfig {
	return &LookupFileConfig{InferTypes: true, PollInterval: time.Second}
}

func (c *LookupFileConfig) decode(q yamlPair) error { return decodeTable(q, "file", c) }

// check validates the options.
func (c *LookupFileConfig) check() error {
	switch {
	case c.Path == "":
		return errors.New("needs `path:`, the table file")
	case c.Key == "":
		return errors.New("needs `key:`, the column records are matched on")
	case c.PollInterval <= 0:
		return errors.New("poll_interval: want a positive duration such as 1s")
	}
	if _, err := c.format(); err != nil {
		return err
	}
	if _, err := csvDelimiter(c.Delimiter); c.Delimiter != "" && err != nil {
		return fmt.Errorf("delimiter: %w", err)
	}
	return nil
}

// format returns "csv" or "jsonl".
func (c *LookupFileConfig) format() (string, error) {
	switch c.Format {
	case "csv":
		return "csv", nil
	case "jsonl", "json", "ndjson":
		return "jsonl", nil
	case "":
		switch strings.ToLower(filepath.Ext(c.Path)) {
		case ".csv":
			return "csv", nil
		case ".jsonl", ".ndjson", ".json":
			return "jsonl", nil
		}
		return "", fmt.Errorf("format: cannot tell from %q: set format: csv or format: jsonl", c.Path)
	}
	return "", fmt.Errorf("format: %q is not one of csv, jsonl", c.Format)
}

// preload reads the table for Validate and keeps it for open.
func (c *LookupFileConfig) preload() (*lookupIndex, error) {
	idx, st, err := c.read()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.preloaded, c.preStat = idx, st
	c.mu.Unlock()
	return idx, nil
}

// open loads the table (or takes the one Validate read, when the file has
// not changed since) and starts its reloader.
func (c *LookupFileConfig) open(b pipeline.Build, logger *slog.Logger) (*lookupMemTable, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("lookup: table: file: %w", err)
	}
	c.mu.Lock()
	idx, st := c.preloaded, c.preStat
	c.preloaded, c.preStat = nil, nil
	c.mu.Unlock()
	if now, err := os.Stat(c.Path); idx == nil || err != nil || !sameFileVersion(st, now) {
		var err error
		if idx, st, err = c.read(); err != nil {
			return nil, fmt.Errorf("lookup: %w", err)
		}
	}
	logger.Info("lookup: table loaded", "path", c.Path, "rows", len(idx.rows))
	last := st          // the version in use
	var bad os.FileInfo // a version that failed to parse: not read again
	return startLookupMemTable(idx, c.PollInterval, logger, b.Component, func() (*lookupIndex, error) {
		now, err := os.Stat(c.Path)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", c.Path, err)
		}
		if sameFileVersion(last, now) || sameFileVersion(bad, now) {
			return nil, nil
		}
		idx, st, err := c.read()
		if err != nil {
			if !errors.Is(err, errFileChanging) {
				bad = now
			}
			return nil, err
		}
		last = st
		return idx, nil
	}), nil
}

// sameFileVersion reports whether two stats are of one unchanged file.
func sameFileVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// errFileChanging says the file changed while it was read.
var errFileChanging = errors.New("changed while it was read")

// read parses the whole file, and returns it with the file's stat from
// before the read. A file that changed while it was read is an error (the
// next poll reads it again).
func (c *LookupFileConfig) read() (*lookupIndex, os.FileInfo, error) {
	f, err := os.Open(c.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("table %s: %w", c.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("table %s: %w", c.Path, err)
	}
	format, _ := c.format()
	idx := &lookupIndex{source: c.Path, colIndex: map[string]int{}, rows: map[string][]any{}}
	br := bufio.NewReaderSize(f, 256<<10)
	if format == "csv" {
		err = c.readCSV(br, idx)
	} else {
		err = c.readJSONLines(br, idx)
	}
	if err != nil {
		return nil, nil, err
	}
	if after, err := os.Stat(c.Path); err != nil || !sameFileVersion(st, after) {
		return nil, nil, fmt.Errorf("table %s: %w", c.Path, errFileChanging)
	}
	return idx, st, nil
}

// readCSV reads a header line, then rows.
func (c *LookupFileConfig) readCSV(r io.Reader, idx *lookupIndex) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	if c.Delimiter != "" {
		cr.Comma, _ = csvDelimiter(c.Delimiter)
	}
	header, err := cr.Read()
	if err == io.EOF {
		return fmt.Errorf("table %s: empty file (want a header line naming the columns)", c.Path)
	}
	if err != nil {
		return lookupCSVError(c.Path, err)
	}
	keyCol := -1
	for i, name := range header {
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff") // a byte-order mark
		}
		if _, dup := idx.colIndex[name]; dup {
			return fmt.Errorf("table %s:1: column %q appears twice in the header", c.Path, name)
		}
		idx.column(name)
		if name == c.Key {
			keyCol = i
		}
	}
	if keyCol < 0 {
		return fmt.Errorf("table %s:1: no column %q in the header (it has %s)", c.Path, c.Key, knownKeys(idx.columns...))
	}
	idx.fixed = true
	dups := 0
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return lookupCSVError(c.Path, err)
		}
		row := make([]any, len(rec))
		for i, s := range rec {
			s = strings.Clone(s) // ReuseRecord: the fields share a buffer
			row[i] = s
			if c.InferTypes && i != keyCol {
				if v, ok := parseInferValue(s); ok {
					row[i] = v
				}
			}
		}
		key := strings.Clone(rec[keyCol])
		if _, dup := idx.rows[key]; dup {
			dups++
		}
		idx.rows[key] = row
	}
	idx.dups = dups
	return nil
}

// lookupCSVError names the path and line of a CSV error.
func lookupCSVError(path string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return fmt.Errorf("table %s:%d: %v (the header has another number)", path, pe.Line, pe.Err)
		}
		return fmt.Errorf("table %s:%d:%d: %v", path, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("table %s: %w", path, err)
}

// readJSONLines reads one JSON object per line (blank lines skipped).
func (c *LookupFileConfig) readJSONLines(br *bufio.Reader, idx *lookupIndex) error {
	var fs pipeline.Fields
	dups := 0
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("table %s:%d: %w", c.Path, line, err)
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		fs.Reset()
		if perr := fs.ParseJSONObject(b); perr != nil {
			return fmt.Errorf("table %s:%d: %v", c.Path, line, perr)
		}
		fs.DecodeAll()
		kv := fs.Get(c.Key)
		if kv == nil {
			return fmt.Errorf("table %s:%d: no %q member (the key)", c.Path, line, c.Key)
		}
		kb, ok := appendLookupKey(nil, kv)
		if !ok {
			return fmt.Errorf("table %s:%d: key %q: %s is not a key (want a string, number or boolean)", c.Path, line, c.Key, parseDescribeValue(kv))
		}
		row := make([]any, 0, fs.Len())
		for i := range fs.Len() {
			ci := idx.column(fs.Name(i))
			for len(row) <= ci {
				row = append(row, lookupAbsent)
			}
			row[ci] = fs.Value(i)
		}
		key := string(kb)
		if _, dup := idx.rows[key]; dup {
			dups++
		}
		idx.rows[key] = row
		if err == io.EOF {
			break
		}
	}
	idx.dups = dups
	return nil
}
