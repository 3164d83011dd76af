package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Kind is the role of a component.
type Kind string

// The component kinds.
const (
	KindSource   Kind = "source"
	KindOperator Kind = "operator"
	KindSink     Kind = "sink"
)

// Entry describes one registered component.
type Entry struct {
	Kind Kind
	Name string
	// Doc is a one-line description, used by `weir schema` and the README.
	Doc string
	// NewConfig returns a new configuration with its defaults set, as a
	// pointer to a struct the YAML decodes into. The value implements
	// SourceConfig, OperatorConfig or SinkConfig according to Kind.
	NewConfig func() any
	// ExactlyOnce says a sink can commit idempotently (it implements
	// Committer), so exactly_once pipelines may use it.
	ExactlyOnce bool
}

// Registry maps component names to their entries. The zero value is not
// usable; use NewRegistry or Default. A Registry is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex // guards entries
	entries map[Kind]map[string]*Entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{entries: map[Kind]map[string]*Entry{
		KindSource: {}, KindOperator: {}, KindSink: {},
	}}
}

// Default is the registry that weir's built-in components register into
// from their init functions, and that `weir run` uses.
var Default = NewRegistry()

// Register adds e. It panics on a duplicate name or a bad entry: both are
// programming errors found at init.
func (r *Registry) Register(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.entries[e.Kind]
	if !ok || e.Name == "" || e.NewConfig == nil {
		panic(fmt.Sprintf("pipeline: bad registry entry %q of kind %q", e.Name, e.Kind))
	}
	if _, dup := m[e.Name]; dup {
		panic(fmt.Sprintf("pipeline: %s %q registered twice", e.Kind, e.Name))
	}
	cfg := e.NewConfig()
	switch e.Kind {
	case KindSource:
		_, ok = cfg.(SourceConfig)
	case KindOperator:
		_, ok = cfg.(OperatorConfig)
	case KindSink:
		_, ok = cfg.(SinkConfig)
	}
	if !ok {
		panic(fmt.Sprintf("pipeline: config of %s %q (%T) does not build a %s", e.Kind, e.Name, cfg, e.Kind))
	}
	m[e.Name] = &e
}

// Lookup returns the entry for a kind and name.
func (r *Registry) Lookup(k Kind, name string) (*Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[k][name]
	return e, ok
}

// Names returns the registered names of a kind, sorted.
func (r *Registry) Names(k Kind) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.entries[k]))
}

// Clone returns an independent copy, so a test or an embedder can add
// components without touching Default.
func (r *Registry) Clone() *Registry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := NewRegistry()
	for k, m := range r.entries {
		maps.Copy(c.entries[k], m)
	}
	return c
}

// RegisterSource registers a source in Default.
func RegisterSource[C SourceConfig](name, doc string, newConfig func() C) {
	Default.Register(Entry{Kind: KindSource, Name: name, Doc: doc, NewConfig: func() any { return newConfig() }})
}

// RegisterOperator registers an operator in Default.
func RegisterOperator[C OperatorConfig](name, doc string, newConfig func() C) {
	Default.Register(Entry{Kind: KindOperator, Name: name, Doc: doc, NewConfig: func() any { return newConfig() }})
}

// RegisterSink registers a sink in Default. exactlyOnce says the sink
// implements Committer.
func RegisterSink[C SinkConfig](name, doc string, exactlyOnce bool, newConfig func() C) {
	Default.Register(Entry{Kind: KindSink, Name: name, Doc: doc, ExactlyOnce: exactlyOnce, NewConfig: func() any { return newConfig() }})
}
