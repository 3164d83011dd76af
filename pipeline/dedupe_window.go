package pipeline

import (
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// DedupeWindow is the `dedupe_window:` option of the sources whose
// redeliveries the runtime drops by message id under exactly_once (mqtt
// with id_property, amqp's message-id, nats's stream sequence): how long
// the ids of messages already stored in the ingest WAL are remembered.
//
//	dedupe_window: { count: 131072, age: 24h }
//
// An id is forgotten once count newer ids have been stored after it, or
// once it is older than age (the wall-clock time it was read), whichever
// comes first; a redelivery of a forgotten id is processed again. Age
// absent (or 0) means no age limit: only count bounds the set. The ids
// stay remembered across restarts and across the truncation of the WAL
// (see runtime: the seen-id file).
type DedupeWindow struct {
	// Count is the most ids remembered; default DefaultDedupeCount.
	Count int
	// Age, when positive, forgets ids read longer ago than that.
	Age time.Duration
}

// DefaultDedupeCount is the ids a source remembers when dedupe_window
// does not say.
const DefaultDedupeCount = 131072

// MaxDedupeCount bounds dedupe_window.count: the set is held in memory
// (about 100 bytes per id with its bookkeeping).
const MaxDedupeCount = 1 << 24

// DefaultDedupeWindow returns the window a source has by default.
func DefaultDedupeWindow() DedupeWindow { return DedupeWindow{Count: DefaultDedupeCount} }

// DedupeWindower is implemented by configurations of sources whose
// messages carry ids the runtime de-duplicates redeliveries by; the
// runtime sizes the set of seen ids from it.
type DedupeWindower interface {
	SeenIDWindow() DedupeWindow
}

// UnmarshalYAML decodes `{count: N, age: D}`, reporting each problem at
// its line and column.
func (w *DedupeWindow) UnmarshalYAML(n ast.Node) error {
	l := &loader{}
	ps, ok := l.pairs(n, "dedupe_window")
	if !ok {
		return l.errs[0]
	}
	if len(l.errs) > 0 {
		return l.errs[0]
	}
	for _, p := range ps {
		at := p.value
		if at == nil {
			at = p.kn
		}
		text, _, _ := scalarString(p.value)
		text = strings.TrimSpace(text)
		switch p.key {
		case "count":
			c, err := strconv.Atoi(text)
			if err != nil || c < 1 || c > MaxDedupeCount {
				l.errorf(at, "dedupe_window: count: want a whole number of message ids from 1 to %d (default %d), got %s",
					MaxDedupeCount, DefaultDedupeCount, describe(at))
				continue
			}
			w.Count = c
		case "age":
			d, err := time.ParseDuration(text)
			if err != nil || d < 0 {
				l.errorf(at, "dedupe_window: age: want a duration such as 10m or 24h (absent: no age limit), got %s", describe(at))
				continue
			}
			w.Age = d
		default:
			l.errorf(p.kn, "dedupe_window: unknown key %q (want count, age)", p.key)
		}
	}
	if len(l.errs) > 0 {
		return l.errs[0]
	}
	return nil
}

// dedupeWindowSchema is the JSON Schema of a DedupeWindow.
func dedupeWindowSchema() map[string]any {
	return map[string]any{
		"type": "object", "additionalProperties": false,
		"description": "how long ids of stored messages are remembered to drop redeliveries: forgotten after count newer ids or after age, whichever comes first",
		"properties": map[string]any{
			"count": scalarOrEnv(map[string]any{"type": "integer", "minimum": 1, "maximum": MaxDedupeCount, "default": DefaultDedupeCount}),
			"age":   map[string]any{"$ref": "#/$defs/duration", "description": "absent: no age limit"},
		},
	}
}
