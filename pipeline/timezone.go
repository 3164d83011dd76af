package pipeline

import (
	"reflect"
	"time"
)

// The pipeline's `timezone:` is the time zone that date, hour and
// format_time use when an expression calls them without one (UTC when
// absent). The loader gives it to every expression and template of the
// pipeline's components, which it finds by walking their configurations.

// timezone reads `timezone:`, an IANA name.
func (l *loader) timezone(p pair) string {
	name := l.str(p)
	if _, err := time.LoadLocation(name); err != nil || name == "" || name == "Local" {
		l.errorf(valueOr(p), "timezone: %q is not an IANA time zone name, such as Europe/Paris or UTC", name)
		return ""
	}
	return name
}

// setZone gives zone to every expression of s's components.
func setZone(s *Spec, zone string) {
	comps := append(append(append([]*Component(nil), s.Sources...), s.Operators...), s.Sinks...)
	if s.DeadLetter != nil {
		comps = append(comps, s.DeadLetter)
	}
	seen := map[seenPtr]bool{}
	for _, c := range comps {
		eachExpr(reflect.ValueOf(c.Config), seen, func(e *Expr) { _ = e.SetZone(zone) })
	}
}

// SetZone sets the time zone of every expression of the template (see
// Expr.SetZone).
func (t *Template) SetZone(name string) error {
	for _, p := range t.parts {
		if p.expr != nil {
			if err := p.expr.SetZone(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// seenPtr is a pointer eachExpr has been through.
type seenPtr struct {
	t reflect.Type
	p uintptr
}

// eachExpr calls fn for every *Expr reachable from v through exported
// fields, pointers, interfaces, slices, arrays and maps, and for those of
// every Template.
func eachExpr(v reflect.Value, seen map[seenPtr]bool, fn func(*Expr)) {
	switch v.Kind() {
	case reflect.Pointer:
		// By type too: a struct and its first field share an address.
		k := seenPtr{v.Type(), v.Pointer()}
		if v.IsNil() || seen[k] {
			return
		}
		seen[k] = true
		switch x := v.Interface().(type) {
		case *Expr:
			fn(x)
			return
		case *Template:
			for _, p := range x.parts {
				if p.expr != nil {
					fn(p.expr)
				}
			}
			return
		}
		eachExpr(v.Elem(), seen, fn)
	case reflect.Interface:
		if !v.IsNil() {
			eachExpr(v.Elem(), seen, fn)
		}
	case reflect.Struct:
		if v.CanAddr() && (v.Type() == exprType || v.Type() == templateType) {
			eachExpr(v.Addr(), seen, fn)
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				eachExpr(v.Field(i), seen, fn)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			eachExpr(v.Index(i), seen, fn)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			eachExpr(it.Value(), seen, fn)
		}
	}
}
