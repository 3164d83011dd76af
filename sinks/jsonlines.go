package sinks

import (
	"github.com/weirhq/weir/pipeline"
)

// jsonLinesFormat is the columnarFormat of JSON lines: each record's JSON
// (pipeline.Record.AppendJSON, as the file sink writes it) and a newline.
// It needs no schema; a declared one is checked by Check (a record that
// does not fit goes to the dead-letter output) and the record is still
// written whole. A part is a plain concatenation of lines, so it can stay
// open across checkpoints and be resumed after a crash (resumableEncoder).
type jsonLinesFormat struct{ sink string }

func (f jsonLinesFormat) name() string { return f.sink }
func (jsonLinesFormat) ext() string    { return "jsonl" }
func (jsonLinesFormat) schemaless()    {}

func (jsonLinesFormat) newEncoder(w *partFile, _ *ColumnarSchema) (columnarEncoder, error) {
	return &jsonLinesEncoder{w: w}, nil
}

type jsonLinesEncoder struct {
	w   *partFile
	buf []byte
}

func (e *jsonLinesEncoder) write(recs []*pipeline.Record) (int, error) {
	for i, r := range recs {
		e.buf = r.AppendJSON(e.buf[:0])
		e.buf = append(e.buf, '\n')
		if _, err := e.w.Write(e.buf); err != nil {
			return i, err
		}
	}
	if cap(e.buf) > 1<<20 {
		e.buf = nil // do not keep one huge record's buffer
	}
	return len(recs), nil
}

func (e *jsonLinesEncoder) size() int64     { return e.w.n }
func (e *jsonLinesEncoder) buffered() int64 { return 0 } // the part file's write buffer only
func (e *jsonLinesEncoder) flush() error    { return nil }
func (e *jsonLinesEncoder) close() error    { return nil }
func (e *jsonLinesEncoder) resumable()      {}
