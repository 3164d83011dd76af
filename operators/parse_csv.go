package operators

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/weirhq/weir/pipeline"
)

// csvParser reads one CSV record per line with encoding/csv (RFC 4180:
// quoted fields may hold the delimiter, doubled quotes and line breaks).
// Fields are named by the declared columns or by the header of the input
// the record came from; a record with another number of fields is an error.
type csvParser struct {
	columns []string
	header  bool
	// headers holds the column names of each input whose header has been
	// read. It is the operator's state: see csvHeaderOp.
	headers map[csvInput][]string

	// rd is one csv.Reader reused for every line, reading from in, which
	// is refilled per line (bufio and csv both read on after an io.EOF).
	rd *csv.Reader
	in csvLineReader
}

// csvInput identifies an input whose first record is its header: a source
// of the pipeline, and the file (or partition) within it.
type csvInput struct {
	Source int
	Origin string
}

func newCSVParser(columns []string, header bool, delim rune) *csvParser {
	p := &csvParser{columns: columns, header: header, headers: map[csvInput][]string{}}
	p.rd = csv.NewReader(&p.in)
	p.rd.Comma = delim
	p.rd.FieldsPerRecord = -1 // counted here, against the columns
	p.rd.ReuseRecord = true
	return p
}

// csvDelimiter checks a `delimiter:` option.
func csvDelimiter(s string) (rune, error) {
	if s == "" {
		return ',', nil
	}
	r, size := utf8.DecodeRuneInString(s)
	if size != len(s) {
		return 0, fmt.Errorf("%q: want a single character, such as \",\", \";\" or \"\\t\"", s)
	}
	if r == '"' || r == '\r' || r == '\n' || r == utf8.RuneError || r == 0 {
		return 0, fmt.Errorf("%q cannot be a delimiter", s)
	}
	return r, nil
}

func (p *csvParser) parse(r *pipeline.Record, line string, out []parsedField) ([]parsedField, error) {
	cols := p.columns
	if p.header {
		in := csvInput{Source: r.Source, Origin: r.Origin.Name}
		h, ok := p.headers[in]
		if !ok || r.Origin.Line == 1 {
			// Line 1 is a header even when one was seen: the file was
			// rotated or truncated and starts over.
			return out, p.readHeader(in, line)
		}
		if cols == nil {
			cols = h
		}
	}
	fields, err := p.read(line)
	if err != nil {
		return out, err
	}
	if len(fields) != len(cols) {
		return out, fmt.Errorf("%d fields, want %d (%s)", len(fields), len(cols), strings.Join(cols, ", "))
	}
	for i, f := range fields {
		out = append(out, parsedField{name: cols[i], val: f, text: true})
	}
	return out, nil
}

// readHeader takes line as the header of in. It returns errParseSkip when
// the header is good (the record is consumed), or why it is not, in which
// case the next record of in is tried as the header.
func (p *csvParser) readHeader(in csvInput, line string) error {
	fields, err := p.read(line)
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if p.columns != nil {
		p.headers[in] = p.columns
		return errParseSkip
	}
	names := make([]string, len(fields))
	seen := make(map[string]bool, len(fields))
	for i, f := range fields {
		if i == 0 {
			f = strings.TrimPrefix(f, "\ufeff") // a byte order mark before the first name
		}
		if f == "" {
			f = "column_" + strconv.Itoa(i+1)
		}
		if seen[f] {
			return fmt.Errorf("header: column %q appears twice", f)
		}
		seen[f] = true
		names[i] = f
	}
	p.headers[in] = names
	return errParseSkip
}

// read parses line as exactly one CSV record. The returned slice is reused
// by the next call; its strings are not.
func (p *csvParser) read(line string) ([]string, error) {
	p.in.s = line
	fields, err := p.rd.Read()
	if err == io.EOF {
		return nil, errParseEmptyLine
	}
	if err != nil {
		p.drain()
		return nil, csvError(err)
	}
	// Whatever is left must be blank: one line, one record.
	if _, err := p.rd.Read(); err != io.EOF {
		p.drain()
		return nil, errors.New("more than one record in line")
	}
	return fields, nil
}

// drain discards what the reader still holds of the current line, so the
// next line starts afresh. Every Read consumes at least one line, or
// returns io.EOF, so this ends.
func (p *csvParser) drain() {
	for {
		if _, err := p.rd.Read(); err == io.EOF {
			return
		}
	}
}

// csvError rewrites a csv.ParseError, whose line numbers count every line
// the reused reader has seen, relative to the record.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if pe.Line > pe.StartLine {
			return fmt.Errorf("%v at line %d, column %d of the record", pe.Err, pe.Line-pe.StartLine+1, pe.Column)
		}
		return fmt.Errorf("%v at column %d", pe.Err, pe.Column)
	}
	return err
}

// csvLineReader is an io.Reader over a string that can be refilled.
type csvLineReader struct{ s string }

func (l *csvLineReader) Read(b []byte) (int, error) {
	if l.s == "" {
		return 0, io.EOF
	}
	n := copy(b, l.s)
	l.s = l.s[n:]
	return n, nil
}

// csvHeaderOp is the parse operator for `format: csv` with `header: true`:
// the headers read so far are state, kept in checkpoints, because after a
// restart a source resumes past the header line.
type csvHeaderOp struct {
	*parseOp
	csv *csvParser
}

// Stateless implements pipeline.Stateless: the headers are state.
func (o *csvHeaderOp) Stateless() bool { return false }

type csvHeaderState struct {
	Source  int      `json:"source"`
	Origin  string   `json:"origin,omitempty"`
	Columns []string `json:"columns"`
}

// Snapshot implements pipeline.Snapshotter: the headers read so far, as
// JSON.
func (o *csvHeaderOp) Snapshot() ([]byte, error) {
	state := make([]csvHeaderState, 0, len(o.csv.headers))
	for in, cols := range o.csv.headers {
		state = append(state, csvHeaderState{Source: in.Source, Origin: in.Origin, Columns: cols})
	}
	// A stable order makes equal states equal bytes.
	slices.SortFunc(state, func(a, b csvHeaderState) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), strings.Compare(a.Origin, b.Origin))
	})
	return json.Marshal(state)
}

// Restore implements pipeline.Snapshotter.
func (o *csvHeaderOp) Restore(data []byte) error {
	var state []csvHeaderState
	if err := json.Unmarshal(data, &state); err != nil {
		return fmt.Errorf("parse: restore csv headers: %w", err)
	}
	clear(o.csv.headers)
	for _, s := range state {
		if len(s.Columns) == 0 {
			continue // not a header: that input's next record will be
		}
		o.csv.headers[csvInput{Source: s.Source, Origin: s.Origin}] = s.Columns
	}
	return nil
}
