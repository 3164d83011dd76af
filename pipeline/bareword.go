package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// BareWordReader is implemented by operator configurations whose
// expressions may read a bare word meant as text (filter, map): `level ==
// error` compares two fields, and `map: {env: prod}` copies the field
// prod. `weir validate` warns about each such word that is not a field
// known to come from an earlier operator (see FieldDeclarer).
type BareWordReader interface {
	// BareWords returns the words, each with the configuration text that
	// would mean the text instead.
	BareWords() []BareWordUse
}

// BareWordUse is one bare word in a configuration, with the fix.
type BareWordUse struct {
	BareWord
	// Fix is how to write the option so that the word is text, such as
	// `filter: 'level == "error"'`.
	Fix string
}

// FieldDeclarer is implemented by operator configurations that know
// fields their output records have: a parse with a regex pattern or csv
// columns, a map. Fields are the names; Complete says a record has no others
// (the operator replaced the record's fields), false that it may keep
// or add others (it adds the names to those already there).
type FieldDeclarer interface {
	DeclaredFields() (fields []string, complete bool)
}

// warnBareWords warns, operator by operator, about bare words that are
// not fields known to exist at that point.
func (l *loader) warnBareWords(s *Spec) {
	known := map[string]bool{}
	complete := false // known holds every field a record can have
	for _, c := range s.Operators {
		if r, ok := c.Config.(BareWordReader); ok {
			for _, w := range r.BareWords() {
				if known[w.Name] {
					continue
				}
				pos := w.Pos
				if pos.File == "" {
					pos.File = l.file
				}
				if pos.Line == 0 {
					pos = c.Pos
				}
				why := "no operator before it is known to produce that field"
				if complete {
					why = "records here have no such field (they have " + strings.Join(slices.Sorted(maps.Keys(known)), ", ") + ")"
				}
				l.warns = append(l.warns, &ConfigError{Pos: pos, Msg: fmt.Sprintf(
					"pipeline %q: %s: the bare word %s reads the field %q, and %s. A bare word is always a field, never text: for the text, write %s; for the field, $[%q] says so and silences this",
					s.Name, c.ID, w.Name, w.Name, why, w.Fix, w.Name)})
			}
		}
		if d, ok := c.Config.(FieldDeclarer); ok {
			fields, all := d.DeclaredFields()
			if all {
				clear(known)
				complete = true
			}
			for _, f := range fields {
				known[f] = true
			}
		}
	}
}
