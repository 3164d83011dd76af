package operators

import (
	"context"
	"testing"
)

// ECS and OpenTelemetry records carry names that are not identifiers
// (@timestamp, user-agent), keys with dots in them (log.level,
// http.response.status_code, service.name) and names of functions (max,
// count). Every operator that names a field reaches them.

const ecsLine = `{"@timestamp":"2026-01-01T00:00:01Z","log.level":"error","http.response.status_code":503,"service.name":"api","user-agent":"curl/8","max":7,"count":2}`

func TestFilterAndMapReachECSNames(t *testing.T) {
	f := buildOp(t, `filter: '$["log.level"] == "error" && $["http.response.status_code"] >= 500 && max > 5'`)
	b := jsonBatch(t, ecsLine, `{"log.level":"info","http.response.status_code":503,"max":7}`, `{"log.level":"error","http.response.status_code":200}`)
	if err := f.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(b.Records) != 1 || len(b.Dead) != 0 {
		t.Fatalf("kept %d records, %d dead; want the ECS error record only:\n%s", len(b.Records), len(b.Dead), outLines(b))
	}
	m := buildOp(t, `map: {next: 'max + 1', total: 'count * 10', agent: '$["user-agent"]', day: 'date($["@timestamp"])', h: 'hour($["@timestamp"])'}`)
	if err := m.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	want := `{"@timestamp":"2026-01-01T00:00:01Z","log.level":"error","http.response.status_code":503,"service.name":"api","user-agent":"curl/8","max":7,"count":2,"next":8,"total":20,"agent":"curl/8","day":"2026-01-01","h":0}`
	if got := outLines(b); got != want || len(b.Dead) != 0 {
		t.Fatalf("map:\ngot  %s\nwant %s\ndead %v", got, want, b.Dead)
	}
}

func TestFieldListsTakeBracketNames(t *testing.T) {
	drop := buildOp(t, `drop_fields: ['$["@timestamp"]', log.level, '$["user-agent"]']`)
	b := jsonBatch(t, ecsLine)
	_ = drop.Process(context.Background(), b)
	if got, want := outLines(b), `{"http.response.status_code":503,"service.name":"api","max":7,"count":2}`; got != want {
		t.Fatalf("drop_fields:\ngot  %s\nwant %s", got, want)
	}
	keep := buildOp(t, `keep_fields: ['$["service.name"]', "@timestamp"]`)
	b = jsonBatch(t, ecsLine)
	_ = keep.Process(context.Background(), b)
	if got, want := outLines(b), `{"@timestamp":"2026-01-01T00:00:01Z","service.name":"api"}`; got != want {
		t.Fatalf("keep_fields:\ngot  %s\nwant %s", got, want)
	}
	if _, err := loadOperator(t, "      - drop_fields: ['$[\"a\"] + 1']\n"); err == nil {
		t.Fatal("an expression that is not a field name was taken as a field list item")
	}
}

// group_by $["service.name"] groups by the dotted key and names the
// output field after it; count as a group_by field is the field.
func TestWindowGroupByBracketName(t *testing.T) {
	op := newOperator(t, windowYAML(
		"tumbling: 10s",
		`event_time: '$["@timestamp"]'`,
		`group_by: ['$["service.name"]', count]`,
		"aggregate: {n: count(), top: max(max)}",
	), nil)
	res := run(t, op, []ev{
		{raw: `{"@timestamp":"` + at(sec(1)) + `","service.name":"api","count":1,"max":3}`},
		{raw: `{"@timestamp":"` + at(sec(2)) + `","service.name":"api","count":1,"max":9}`},
		{raw: `{"@timestamp":"` + at(sec(3)) + `","service.name":"db","count":2,"max":1}`},
	}, 2, true)
	equalLines(t, "windows", res.out, []string{
		row(0, 10, `"service.name":"api","count":1,"n":2,"top":9`, "on_time"),
		row(0, 10, `"service.name":"db","count":2,"n":1,"top":1`, "on_time"),
	})
}
