package pipeline

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// ecsRecord is a log record as Elastic Common Schema loggers and the
// OpenTelemetry collector write them: literal dotted keys at the top
// level, an @timestamp, a dash in a name, nested objects, and fields whose
// names are also functions.
const ecsRecord = `{"@timestamp":"2026-03-04T16:30:00Z","log.level":"error","http.response.status_code":503,
"user-agent":"curl/8","http":{"request":{"method":"GET"},"response":{"status_code":502}},
"max":7,"count":2,"sum":10,"date":"yesterday","len":4,"min":1,"abs":-3,"service.name":"api"}`

func ecs(t *testing.T) *Record {
	t.Helper()
	var r Record
	r.Value = []byte(ecsRecord)
	if err := r.SetFields().ParseJSONObject(r.Value); err != nil {
		t.Fatal(err)
	}
	return &r
}

// Every field can be read, whatever its name: names that are functions
// when called are fields when used as values, and $["..."] reaches names
// that are not identifiers and keys with a dot in them.
func TestExprReachesAnyFieldName(t *testing.T) {
	r := ecs(t)
	cases := []struct {
		src  string
		want any
	}{
		{`max + 1`, 8},
		{`count * 10`, 20},
		{`sum - len`, 6},
		{`date`, "yesterday"},
		{`min`, int64(1)},
		{`abs + 0`, -3},
		{`max(max, 9)`, 9}, // the builtin, called with the field
		{`len("abc") + len`, 7},
		{`abs(abs)`, int64(3)},
		{`date("2026-03-04T05:06:07Z")`, "2026-03-04"},
		{`$["@timestamp"]`, "2026-03-04T16:30:00Z"},
		{`$["log.level"] == "error"`, true},
		{`$["http.response.status_code"] >= 500`, true},
		{`http.response.status_code`, int64(502)}, // the nested object, not the dotted key
		{`http.request.method`, "GET"},
		{`$["user-agent"]`, "curl/8"},
		{`$env["user-agent"]`, "curl/8"},
		{`$env.max`, int64(7)},
		{`$.count`, int64(2)},
		{`$["service.name"] + "/" + $["log.level"]`, "api/error"},
		{`hour($["@timestamp"])`, 16},
		{`hour($["@timestamp"]) >= 9`, true},
		{`$["nope"] ?? "dflt"`, "dflt"},
		{`let n = 100; n + max`, 107}, // a let variable is not a field
		{`len(keys($env))`, 13},       // $env as a whole binds every field
	}
	for _, c := range cases {
		e, err := CompileExpr(c.src, Pos{})
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		got, err := e.Eval(r)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v (%T), %v; want %#v (%T)", c.src, got, got, err, c.want, c.want)
		}
	}
}

// $env bound as a whole does not keep the fields of a previous record.
func TestExprEnvDoesNotLeakBetweenRecords(t *testing.T) {
	e := MustCompileExpr(`"old" in keys($env)`)
	var a, b Record
	a.Value, b.Value = []byte(`{"old":1}`), []byte(`{"new":1}`)
	_ = a.SetFields().ParseJSONObject(a.Value)
	_ = b.SetFields().ParseJSONObject(b.Value)
	if v, _ := e.Eval(&a); v != true {
		t.Fatalf("first record: %v", v)
	}
	if v, _ := e.Eval(&b); v != false {
		t.Fatalf("second record still sees the first one's field: %v", v)
	}
}

func TestExprFieldName(t *testing.T) {
	for src, want := range map[string]string{
		`service`: "service", `$["@timestamp"]`: "@timestamp", `$env["log.level"]`: "log.level",
		` max `: "max", `$.count`: "count", `lower(host)`: "", `a.b`: "",
	} {
		got, ok := MustCompileExpr(src).FieldName()
		if got != want || ok != (want != "") {
			t.Errorf("FieldName(%s) = %q, %v; want %q", src, got, ok, want)
		}
	}
}

// A call of a function that does not exist is refused when the expression
// is compiled, at its position, with the nearest name.
func TestExprUnknownFunction(t *testing.T) {
	cases := []struct{ src, want string }{
		{`lenn(msg) > 3`, `p.yaml:4:11: expression "lenn(msg) > 3": unknown function lenn (did you mean len?)`},
		{`a + uper(b)`, `p.yaml:4:15: expression "a + uper(b)": unknown function uper (did you mean upper?)`},
		{`nosuchfunc(a)`, `p.yaml:4:11: expression "nosuchfunc(a)": unknown function nosuchfunc (the functions are`},
		{`to_tme(ts)`, `did you mean to_time?`},
		{`msg()`, `unknown function msg`},
	}
	for _, c := range cases {
		_, err := CompileExpr(c.src, Pos{File: "p.yaml", Line: 4, Column: 11})
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v; want %q", c.src, err, c.want)
		}
	}
}

func TestExprTimeZones(t *testing.T) {
	r := ecs(t)
	cases := []struct {
		src  string
		want any
	}{
		{`hour($["@timestamp"], "Europe/Paris")`, 17},
		{`hour($["@timestamp"], "Asia/Tokyo")`, 1},
		{`date($["@timestamp"], "Asia/Tokyo")`, "2026-03-05"},
		{`date($["@timestamp"], "UTC")`, "2026-03-04"},
		{`format_time($["@timestamp"], "15:04 MST", "America/New_York")`, "11:30 EST"},
		{`format_time($["@timestamp"], "15:04")`, "16:30"},
	}
	for _, c := range cases {
		got, err := MustCompileExpr(c.src).Eval(r)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, %v; want %#v", c.src, got, err, c.want)
		}
	}
	if _, err := MustCompileExpr(`hour($["@timestamp"], "Mars/Olympus")`).Eval(r); err == nil || !strings.Contains(err.Error(), `unknown time zone "Mars/Olympus"`) {
		t.Errorf("an unknown zone: %v", err)
	}
}

// Arithmetic does not wrap around or turn into null: overflow, division
// by zero and numbers out of range are errors (dead letters, with the
// reason), and a type mistake between literals is still refused at load.
func TestExprNumbersBehaveAsTyped(t *testing.T) {
	var r Record
	r.Value = []byte(`{"p":9223372036854775807,"n":-9223372036854775808,"a":7,"z":0,"f":0.0,"big":1e400,"x":2.5}`)
	_ = r.SetFields().ParseJSONObject(r.Value)
	for _, c := range []struct{ src, err string }{
		{`p + 1`, "integer overflow: 9223372036854775807 + 1"},
		{`n - 1`, "integer overflow: -9223372036854775808 - 1"},
		{`p * 2`, "integer overflow: 9223372036854775807 * 2"},
		{`n * -1`, "integer overflow: -9223372036854775808 * -1"},
		{`a / z`, "division by zero: 7 / 0"},
		{`a % z`, "division by zero: 7 % 0"},
		{`x / f`, "division by zero: 2.5 / 0"},
		{`big`, `field "big" holds a number out of range (+Inf)`},
		{`big > 1`, `field "big" holds a number out of range`},
		{`x ** 100000`, "the result, +Inf, is not a finite number"},
	} {
		v, err := MustCompileExpr(c.src).Eval(&r)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s = %v, %v; want the error %q", c.src, v, err, c.err)
		}
	}
	for _, c := range []struct {
		src  string
		want any
	}{
		{`p - 1`, 9223372036854775806}, {`a * 3`, 21}, {`a / 2`, 3.5}, {`a % 4`, 3},
		{`"x" + to_string(a)`, "x7"}, {`x * 2`, 5.0}, {`p + 0`, 9223372036854775807},
	} {
		if v, err := MustCompileExpr(c.src).Eval(&r); err != nil || !reflect.DeepEqual(v, c.want) {
			t.Errorf("%s = %#v, %v; want %#v", c.src, v, err, c.want)
		}
	}
	if _, err := CompileExpr(`"a" - 1`, Pos{}); err == nil || !strings.Contains(err.Error(), "mismatched types string and int") {
		t.Errorf(`"a" - 1 compiled: %v`, err)
	}
}
