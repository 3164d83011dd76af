package pipeline

import (
	"testing"
	"time"
)

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
