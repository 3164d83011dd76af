package operators

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/go-logfmt/logfmt"
	"github.com/weirhq/weir/pipeline"
)

// logfmtParser reads `key=value key2="quoted value" bare` lines with
// github.com/go-logfmt/logfmt. A key without a value (`bare` or `k=`) gets
// the empty string, as in go-logfmt and Loki; a repeated key keeps its
// first position and its last value. A line must hold at least one `=`, so
// that plain text is not taken for a list of bare keys.
type logfmtParser struct {
	rd strings.Reader
	// keys interns key names: the same few keys come back on every line.
	// It stops growing at maxLogfmtKeys so odd input cannot inflate it.
	keys map[string]string
}

const maxLogfmtKeys = 4096

func newLogfmtParser() *logfmtParser {
	return &logfmtParser{keys: make(map[string]string)}
}

func (p *logfmtParser) parse(_ *pipeline.Record, line string, out []parsedField) ([]parsedField, error) {
	line = parseTrimEOL(line)
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		return out, fmt.Errorf("line break at offset %d: want one record per line", i)
	}
	if strings.IndexByte(line, '=') < 0 {
		if strings.TrimSpace(line) == "" {
			return out, errParseEmptyLine
		}
		return out, errors.New("no key=value pair in line")
	}
	p.rd.Reset(line)
	// A decoder per line: go-logfmt has no Reset. Its buffer is sized to
	// the line and never reused, because the decoder is dropped after this
	// one record, so values may alias it (Value is valid until the next
	// ScanRecord, which never comes).
	dec := logfmt.NewDecoderSize(&p.rd, len(line)+1)
	if !dec.ScanRecord() {
		return out, logfmtError(dec.Err())
	}
	for dec.ScanKeyval() {
		out = append(out, parsedField{name: p.key(dec.Key()), val: logfmtAlias(dec.Value()), text: true})
	}
	if err := dec.Err(); err != nil {
		return out, logfmtError(err)
	}
	return out, nil
}

func (p *logfmtParser) key(b []byte) string {
	if k, ok := p.keys[string(b)]; ok {
		return k
	}
	k := string(b)
	if len(p.keys) < maxLogfmtKeys {
		p.keys[k] = k
	}
	return k
}

// logfmtAlias returns a string sharing b, which must never change again.
func logfmtAlias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func logfmtError(err error) error {
	var se *logfmt.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s at offset %d", se.Msg, se.Pos-1)
	}
	if err == nil {
		return errParseEmptyLine
	}
	return err
}
