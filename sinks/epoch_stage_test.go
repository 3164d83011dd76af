package sinks

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPostgresNATSEpochStageRoundTripAndDamage(t *testing.T) {
	dir := t.TempDir()
	st, err := newEpochStage(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	empty, err := st.Seal(1)
	if err != nil || empty.Records != 0 || empty.File != "" {
		t.Fatalf("empty epoch: %+v %v", empty, err)
	}
	for i := 0; i < 1000; i++ {
		big := strings.Repeat("v", i*37%5000) // sizes across the reader's buffer
		if err := st.Append([]byte(fmt.Sprint("k", i)), []byte(big), nil); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := st.Seal(2)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Records != 1000 || tok.Checkpoint != 2 || len(st.Staged()) != 1 {
		t.Fatalf("token %+v, staged %v", tok, st.Staged())
	}
	n := int64(0)
	err = st.Each(tok, func(i int64, f [][]byte) error {
		if i != n || len(f) != 3 || string(f[0]) != fmt.Sprint("k", i) || len(f[1]) != int(i*37%5000) || len(f[2]) != 0 {
			return fmt.Errorf("record %d: %d fields, %q, %d bytes", i, len(f), f[0], len(f[1]))
		}
		n++
		return nil
	})
	if err != nil || n != 1000 {
		t.Fatalf("read %d records: %v", n, err)
	}
	// Any flipped byte is found before a single record is handed out.
	path := filepath.Join(dir, tok.File)
	good, _ := os.ReadFile(path)
	for _, off := range []int{0, 9, len(good) / 2, len(good) - 13, len(good) - 1} {
		bad := append([]byte(nil), good...)
		bad[off] ^= 0x40
		_ = os.WriteFile(path, bad, 0o644)
		called := false
		err := st.Each(tok, func(int64, [][]byte) error { called = true; return nil })
		if err == nil || called || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("byte %d flipped: err %v, records handed out %v", off, err, called)
		}
	}
	_ = os.WriteFile(path, good[:len(good)-3], 0o644)
	if err := st.Each(tok, func(int64, [][]byte) error { return nil }); err == nil {
		t.Fatal("truncated file accepted")
	}
	_ = os.WriteFile(path, good, 0o644)
	// Reset discards sealed and unsealed data.
	_ = st.Append([]byte("unsealed"))
	if err := st.Reset(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left after Reset: %v", left)
	}
	if err := st.Each(tok, func(int64, [][]byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("reading a discarded epoch: %v", err)
	}
	if _, err := parseStageToken([]byte(`{"v":1,"nonce":"a","file":"../etc/passwd"}`)); err == nil {
		t.Fatal("token with a path accepted")
	}
}

func TestPostgresValueCodecRoundTrip(t *testing.T) {
	row := []any{nil, true, false, int64(-1), int64(math.MaxInt64), 1.5, math.Inf(-1), "", "héllo\x00",
		time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC), []byte{0, 1, 2}, []byte{}}
	var b []byte
	for _, v := range row {
		b = pgAppendValue(b, v)
	}
	got, err := pgDecodeValues(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, row) {
		t.Fatalf("got  %#v\nwant %#v", got, row)
	}
}

func TestPostgresConvert(t *testing.T) {
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.FixedZone("", 7200))
	for _, tc := range []struct {
		v    any
		k    pgKind
		want any
		err  bool
	}{
		{int64(3), pgFloat, 3.0, false},
		{"42", pgInt, int64(42), false},
		{2.0, pgInt, int64(2), false},
		{2.5, pgInt, nil, true},
		{1e300, pgInt, nil, true},
		{"x", pgBool, nil, true},
		{"t", pgBool, true, false},
		{0.1, pgNumeric, "0.1", false},
		{math.NaN(), pgNumeric, nil, true},
		{ts, pgTime, ts.UTC(), false},
		{"2024-05-01T10:00:00+02:00", pgTime, ts.UTC(), false},
		{int64(1714550400000), pgTime, time.UnixMilli(1714550400000).UTC(), false},
		{"soon", pgTime, nil, true},
		{map[string]any{"b": int64(1), "a": nil}, pgJSON, []byte(`{"a":null,"b":1}`), false},
		{"x", pgJSON, []byte(`"x"`), false},
		{int64(5), pgText, "5", false},
		{true, pgOther, "true", false},
		{[]any{int64(1)}, pgFloat, nil, true},
		{nil, pgInt, nil, false},
	} {
		got, err := pgConvert(tc.v, tc.k)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("pgConvert(%#v, %s) = %#v, %v; want %#v, error %v", tc.v, pgKindName(tc.k), got, err, tc.want, tc.err)
		}
	}
}

// FuzzPostgresDecodeValues: damaged staged rows are errors, never panics, and
// what decodes re-encodes to the same bytes.
func FuzzPostgresDecodeValues(f *testing.F) {
	var seed []byte
	for _, v := range []any{nil, true, int64(-7), 2.5, "s", time.Unix(1, 2).UTC(), []byte("b")} {
		seed = pgAppendValue(seed, v)
	}
	f.Add(seed)
	f.Add([]byte{tagString, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{tagTime, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		row, err := pgDecodeValues(b, nil)
		if err != nil {
			return
		}
		var again []byte
		for _, v := range row {
			again = pgAppendValue(again, v)
		}
		back, err := pgDecodeValues(again, nil)
		if err != nil || !reflect.DeepEqual(back, row) {
			t.Fatalf("re-encode of %x: %v %#v vs %#v", b, err, back, row)
		}
	})
}
