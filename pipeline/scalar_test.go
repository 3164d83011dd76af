package pipeline

import (
	"reflect"
	"testing"
	"time"
)

// TestScalarMatchesGet: Scalar reads the same value Get decodes, for raw
// and for decoded fields.
func TestScalarMatchesGet(t *testing.T) {
	line := []byte(`{"s":"abc","e":"a\"b","i":42,"big":123456789012345678901,"f":1.5,"x":1e3,"neg":-7,` +
		`"t":true,"fa":false,"n":null,"o":{"a":1},"a":[1],"dup":1,"dup":2}`)
	names := []string{"s", "e", "i", "big", "f", "x", "neg", "t", "fa", "n", "o", "a", "dup", "absent"}
	toAny := func(s Scalar) any {
		switch s.Kind {
		case ScalarString:
			return s.Str
		case ScalarInt:
			if s.Float != float64(s.Int) {
				t.Errorf("Float %v != Int %d", s.Float, s.Int)
			}
			return s.Int
		case ScalarFloat:
			return s.Float
		case ScalarBool:
			return s.Bool
		}
		return nil
	}
	for _, decodeFirst := range []bool{false, true} {
		var fs Fields
		if err := fs.ParseJSONObject(line); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if decodeFirst {
				fs.Get(name)
			}
			s := fs.Scalar(name)
			want := fs.Get(name)
			if s.Kind == ScalarOther {
				switch want.(type) {
				case string, int64, float64, bool, nil:
					if !(name == "e" && !decodeFirst) {
						t.Errorf("%s (decoded first: %v): ScalarOther for %#v", name, decodeFirst, want)
					}
				}
				continue
			}
			if got := toAny(s); !reflect.DeepEqual(got, want) {
				t.Errorf("%s (decoded first: %v): Scalar %#v, Get %#v", name, decodeFirst, got, want)
			}
		}
	}
	var fs Fields
	fs.Set("when", time.Unix(0, 0))
	fs.Set("n", 3) // an int, not an int64: not a field value type
	if fs.Scalar("when").Kind != ScalarOther || fs.Scalar("n").Kind != ScalarOther {
		t.Error("a time and an int should be ScalarOther")
	}
}

func BenchmarkScalar(b *testing.B) {
	line := []byte(`{"ts":"2026-01-01T00:00:00.007Z","service":"billing","latency_ms":12.345,"status":500}`)
	var fs Fields
	b.ReportAllocs()
	for b.Loop() {
		_ = fs.ParseJSONObject(line)
		_ = fs.Scalar("latency_ms")
		_ = fs.Scalar("service")
	}
}

// ScalarAt reads every field as Scalar reads it by name.
func TestScalarAtMatchesScalar(t *testing.T) {
	var fs Fields
	if err := fs.ParseJSONObject([]byte(`{"s":"x","e":"a\"b","i":42,"f":1.5,"big":1e400,"b":true,"n":null,"o":{"a":1},"l":[1]}`)); err != nil {
		t.Fatal(err)
	}
	fs.Set("t", time.Unix(0, 0))
	fs.Set("set", int64(7))
	fs.Get("f") // decoded, not raw any more
	for i := 0; i < fs.Len(); i++ {
		if got, want := fs.ScalarAt(i), fs.Scalar(fs.Name(i)); got != want {
			t.Errorf("field %s: ScalarAt %+v, Scalar %+v", fs.Name(i), got, want)
		}
	}
}
