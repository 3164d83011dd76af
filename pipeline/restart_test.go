package pipeline

import (
	"strings"
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	load := func(restart string) (*Spec, error) {
		cfg, err := testRegistry().Load("p.yaml", []byte("pipelines:\n  - name: a\n    sources: [{src: {paths: [x]}}]\n    sinks: [{commit: {path: o}}]\n"+restart))
		if err != nil {
			return nil, err
		}
		return cfg.Pipelines[0], nil
	}
	s, err := load("")
	if err != nil || s.Restart != DefaultRestart {
		t.Fatalf("default: %+v, %v", s, err)
	}
	s, err = load("    restart: {max_retries: 3, backoff: 200ms, max_backoff: 1s}\n")
	if err != nil || s.Restart != (Restart{MaxRetries: 3, Backoff: 200 * time.Millisecond, MaxBackoff: time.Second}) {
		t.Fatalf("restart: %+v, %v", s.Restart, err)
	}
	var delays []string
	for n := 1; n <= 5; n++ {
		delays = append(delays, s.Restart.Delay(n).String())
	}
	if got := strings.Join(delays, " "); got != "200ms 400ms 800ms 1s 1s" {
		t.Fatalf("delays %s", got)
	}
	if !s.Restart.Retries(3) || s.Restart.Retries(4) || !(Restart{MaxRetries: -1}).Retries(1000) || (Restart{}).Retries(1) {
		t.Fatal("Retries counts wrong")
	}
	_, err = load("    restart: {max_retries: some, backoff: 5, jitter: 1}\n")
	for _, want := range []string{
		`p.yaml:5:28: restart: max_retries: want a whole number, 0 (never retry) or more, or -1 (retry without end), got "some"`,
		`p.yaml:5:43: restart: backoff: want a positive duration such as 1s or 500ms, got "5"`,
		`p.yaml:5:46: restart: unknown key "jitter" (want max_retries, backoff, max_backoff)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
}

// The pipeline's timezone is the default zone of date, hour and
// format_time in every expression and template of the pipeline; an
// explicit zone still wins, and other pipelines keep UTC.
func TestPipelineTimezone(t *testing.T) {
	cfg, err := testRegistry().Load("p.yaml", []byte(`pipelines:
  - name: tokyo
    timezone: Asia/Tokyo
    sources: [{src: {paths: [x]}}]
    operators:
      - filter: 'hour(ts) == 1 && date(ts) == "2026-03-05" && hour(ts, "UTC") == 16 && format_time(ts, "15:04") == "01:30"'
    sinks: [{commit: {path: "out/{{ date(ts) }}/{{ hour(ts) }}.jsonl"}}]
  - name: utc
    sources: [{src: {paths: [x]}}]
    operators:
      - filter: 'hour(ts) == 16'
    sinks: [{commit: {path: "out2/{{ date(ts) }}.jsonl"}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	r.Value = []byte(`{"ts":"2026-03-04T16:30:00Z"}`)
	_ = r.SetFields().ParseJSONObject(r.Value)
	for i, want := range []string{"out/2026-03-05/1.jsonl", "out2/2026-03-04.jsonl"} {
		p := cfg.Pipelines[i]
		f := p.Operators[0].Config.(*tFilterConfig)
		if ok, err := f.E.Clone().EvalBool(&r); !ok || err != nil {
			t.Errorf("%s: filter %s = %v, %v", p.Name, f.E.Source, ok, err)
		}
		if got, err := p.Sinks[0].Config.(*tSinkConfig).Path.Clone().String(&r); got != want || err != nil {
			t.Errorf("%s: path %q, %v; want %q", p.Name, got, err, want)
		}
	}
	_, err = testRegistry().Load("p.yaml", []byte("pipelines:\n  - name: a\n    timezone: Mars/Olympus\n    sources: [{src: {paths: [x]}}]\n    sinks: [{commit: {path: o}}]\n"))
	if err == nil || !strings.Contains(err.Error(), `p.yaml:3:15: timezone: "Mars/Olympus" is not an IANA time zone name`) {
		t.Errorf("bad zone: %v", err)
	}
}
