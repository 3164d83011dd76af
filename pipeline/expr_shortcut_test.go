package pipeline

import (
	"fmt"
	"math"
	"reflect"
	"testing"
)

// TestExprShortcutMatchesVM evaluates each expression that has a shortcut
// with and without it, on records whose fields hold every kind of value
// (strings, escaped strings, whole and fractional numbers, numbers out of
// range, booleans, nulls, absent fields, objects, arrays, values set by an
// operator): the value, and the error when there is one, must be the VM's.
func TestExprShortcutMatchesVM(t *testing.T) {
	exprs := []string{
		`level == "error"`, `level != "error"`, `"error" == level`, `"error" != level`, `level >= "e"`, `level < "f"`,
		`status >= 500`, `status > 500`, `status < 500`, `status <= 500`, `status == 500`, `status != 500`,
		`500 <= status`, `500 > status`, `status >= 499.5`, `status == 500.0`, `latency_ms < 1.5`, `status >= -1`,
		`"bench"`, `5`, `-3`, `1.5`, `true`, `false`, `nil`, `""`,
		`status >= 500 ? 1 : 0`, `status >= 500 ? "bad" : level`, `level == "error" ? latency_ms : 0.5`,
		`level == "error" and status >= 500`, `level == "error" && status >= 500`, `level == "error" or status >= 500`,
		`level == "error" || status >= 500`, `not (status >= 500)`, `!(level == "x")`, `true and status > 1`, `false or level == "x"`,
		`latency_ms`, `level`, `$["level"] == "error"`, `$["status"] >= 500`, `status`,
	}
	values := []string{
		`"error"`, `"info"`, `""`, `"e"`, `"err\nor"`, `500`, `499`, `501`, `500.0`, `499.75`, `-0`, `0`, `-1`, `1.5`, `1e400`, `-1e400`,
		`99999999999999999999`, `"500"`, `null`, `true`, `false`, `{"a":1}`, `[1,2]`,
	}
	var records []*Record
	for _, lv := range values {
		for _, sv := range values {
			r := &Record{Value: fmt.Appendf(nil, `{"level":%s,"status":%s,"latency_ms":%s}`, lv, sv, sv)}
			if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
				t.Fatal(err)
			}
			records = append(records, r)
		}
	}
	for _, v := range []any{nil, "error", int64(500), 500, int32(7), 500.0, math.Inf(1), math.NaN(), true, []any{1}, map[string]any{}} {
		r := &Record{}
		r.Set("level", v)
		r.Set("status", v)
		r.Set("latency_ms", v)
		records = append(records, r, &Record{Value: []byte(`{}`)})
	}
	records = append(records, &Record{Value: []byte(`not json at all`)}) // the "message" view
	for _, src := range exprs {
		e := MustCompileExpr(src)
		if e.shortcut == nil {
			t.Errorf("%s: no shortcut", src)
			continue
		}
		vmOnly := e.Clone()
		vmOnly.shortcut = nil
		for _, r := range records {
			got, gotErr := e.Eval(r)
			want, wantErr := vmOnly.Eval(r)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
				t.Errorf("%s on %s: shortcut %#v, %v; VM %#v, %v", src, r.AppendJSON(nil), got, gotErr, want, wantErr)
			}
		}
	}
}

// Shapes beyond the shortcuts run on the VM, as before.
func TestExprShortcutOnlyForItsShapes(t *testing.T) {
	for _, src := range []string{`level in ["a", "b"]`, `status + 1`, `len(msg) > 3`, `level == other`, `let x = 1; x`,
		`$env`, `date(ts)`, `status >= 500 ? 1 : len(msg)`, `level == nil`, `-status`, `log.level == "x"`} {
		if e := MustCompileExpr(src); e.shortcut != nil {
			t.Errorf("%s: has a shortcut", src)
		}
	}
}
