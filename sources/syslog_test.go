package sources

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

type syslogGot struct {
	msg, reason string
}

// frameAll runs the framer over in and returns what it cut, up to the end
// or the loss of framing.
func frameAll(t *testing.T, framing, in string, max int) (got []syslogGot, lost bool) {
	t.Helper()
	f := newSyslogFramer(strings.NewReader(in), framing, max)
	for range 1000 {
		msg, reason, err := f.next()
		if reason != "" {
			got = append(got, syslogGot{string(msg), reason})
			if f.lost {
				return got, true
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return got, false
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if msg != nil {
			got = append(got, syslogGot{msg: string(msg)})
		}
	}
	t.Fatal("framer does not end")
	return nil, false
}

func TestSyslogFraming(t *testing.T) {
	long := strings.Repeat("x", 40)
	for _, tc := range []struct {
		name, framing, in string
		want              []syslogGot
		lost              bool
	}{
		{"newline", "auto", "<34>1 a\r\n\n<13>b\n<14>c", []syslogGot{{"<34>1 a", ""}, {"<13>b", ""}, {"<14>c", ""}}, false},
		{"octet counting", "auto", "7 <34>1 a5 <13>b", []syslogGot{{"<34>1 a", ""}, {"<13>b", ""}}, false},
		{"mixed per frame", "auto", "5 <13>b<14>c\n3 abc", []syslogGot{{"<13>b", ""}, {"<14>c", ""}, {"abc", ""}}, false},
		{"counted message holds a newline", "auto", "9 <13>a\nb\nc", []syslogGot{{"<13>a\nb\nc", ""}}, false},
		{"line too long, then the next", "auto", "<1>" + long + "\n<2>ok\n", []syslogGot{{("<1>" + long)[:32], "too_long"}, {"<2>ok", ""}}, false},
		{"line of exactly max", "auto", strings.Repeat("y", 32) + "\r\n", []syslogGot{{strings.Repeat("y", 32), ""}}, false},
		{"count over the limit", "auto", "4 <1>a99 <2>xyz\n<3>after\n", []syslogGot{{"<1>a", ""}, {"99 <2>xyz\n<3>after\n", "framing"}}, true},
		{"count not a number", "auto", "12a <1>x\n", []syslogGot{{"12a <1>x\n", "framing"}}, true},
		{"count with a leading zero", "auto", "05 <1>ab", []syslogGot{{"05 <1>ab", "framing"}}, true},
		{"octet_counting refuses a line", "octet_counting", "3 abc<1>line\n", []syslogGot{{"abc", ""}, {"<1>line\n", "framing"}}, true},
		{"newline takes digits as text", "newline", "12 <1>x\n", []syslogGot{{"12 <1>x", ""}}, false},
		{"last counted frame cut short", "auto", "3 abc10 <1>", []syslogGot{{"abc", ""}, {"<1>", "truncated"}}, true},
	} {
		got, lost := frameAll(t, tc.framing, tc.in, 32)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || lost != tc.lost {
			t.Errorf("%s: got %q lost %v, want %q lost %v", tc.name, got, lost, tc.want, tc.lost)
		}
	}
}

func newSyslogTestSource(t *testing.T, edit func(c *SyslogConfig)) *syslogSource {
	t.Helper()
	c := NewSyslogConfig()
	c.Address = "127.0.0.1:0"
	if edit != nil {
		edit(c)
	}
	src, err := c.NewSource(pipeline.Build{Component: "p/sources[0]/syslog", BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*syslogSource)
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// readSyslog reads until want records and dead letters arrived (10s at most).
func readSyslog(t *testing.T, s *syslogSource, want int) (recs []string, dead []pipeline.DeadLetter) {
	t.Helper()
	return readSyslogFor(t, s, want, 10*time.Second)
}

func readSyslogFor(t *testing.T, s *syslogSource, want int, wait time.Duration) (recs []string, dead []pipeline.DeadLetter) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for len(recs)+len(dead) < want && time.Now().Before(deadline) {
		var b pipeline.Batch
		if _, err := s.Read(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			recs = append(recs, string(r.Value))
		}
		dead = append(dead, b.Dead...)
	}
	return recs, dead
}

func TestSyslogTCPGarbageClosesOnlyThatConnection(t *testing.T) {
	s := newSyslogTestSource(t, func(c *SyslogConfig) { c.MaxMessageBytes = 100 })
	good, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	bad, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	fmt.Fprintf(bad, "11 <13>1 hello999999 <13>huge\n")
	bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("connection that lost framing: read %v, want EOF (closed by weir)", err)
	}
	fmt.Fprintf(good, "<13>one\n20 <13>two with\nnewline<13>three\n")
	recs, dead := readSyslog(t, s, 5)
	want := []string{"<13>1 hello", "<13>one", "<13>two with\nnewline", "<13>three"}
	if fmt.Sprint(recs) != fmt.Sprint(want) && fmt.Sprint(recs) != fmt.Sprint(append(want[1:], want[0])) {
		t.Errorf("records %q, want %q", recs, want)
	}
	if len(dead) != 1 || dead[0].Reason != "framing" || !strings.Contains(dead[0].Error, "octet count 999999 is over max_message_bytes 100") ||
		dead[0].Component != "p/sources[0]/syslog" || !strings.HasPrefix(string(dead[0].Record.Value), "999999 <13>huge") ||
		dead[0].Record.Origin.Name != bad.LocalAddr().String() || dead[0].Record.Origin.Offset != 1 {
		t.Errorf("dead letters %+v, want the oversize frame from %s", dead, bad.LocalAddr())
	}
}

func TestSyslogTCPMaxConnections(t *testing.T) {
	s := newSyslogTestSource(t, func(c *SyslogConfig) { c.MaxConnections = 1 })
	first, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	fmt.Fprintf(first, "<1>first\n")
	if recs, _ := readSyslog(t, s, 1); fmt.Sprint(recs) != "[<1>first]" {
		t.Fatalf("read %q", recs) // the first connection is being served
	}
	second, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("connection over max_connections: read %v, want EOF", err)
	}
	first.Close()
	// The slot comes back once the first connection is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		third, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(third, "<1>third\n")
		recs, _ := readSyslogFor(t, s, 1, 300*time.Millisecond)
		third.Close()
		if fmt.Sprint(recs) == "[<1>third]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after the first closed")
		}
	}
}

func TestSyslogUDP(t *testing.T) {
	s := newSyslogTestSource(t, func(c *SyslogConfig) { c.Protocol = "udp"; c.MaxMessageBytes = 20 })
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("<13>1 - host app - - - hi\n"))
	c.Write([]byte("<13>short\n"))
	recs, dead := readSyslog(t, s, 2)
	if fmt.Sprint(recs) != "[<13>short]" || len(dead) != 1 || dead[0].Reason != "too_long" || string(dead[0].Record.Value) != "<13>1 - host app - -" {
		t.Fatalf("records %q dead %+v", recs, dead)
	}
}

func TestSyslogTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := httpTestCert(t, dir)
	s := newSyslogTestSource(t, func(c *SyslogConfig) { c.TLS = &pipeline.TLSOptions{CertFile: certFile, KeyFile: keyFile} })
	c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "14 <13>1 over TLS")
	if recs, _ := readSyslog(t, s, 1); fmt.Sprint(recs) != "[<13>1 over TLS]" {
		t.Fatalf("read %q", recs)
	}
}

func TestSyslogConfig(t *testing.T) {
	load := func(src, guarantee string) (*pipeline.Config, error) {
		return pipeline.Default.Load("s.yaml", fmt.Appendf(nil, `
pipelines:
  - name: s
    guarantee: %s
    sources:
      - syslog: %s
    sinks:
      - file: { path: out.log }
`, guarantee, src))
	}
	cfg, err := load(`{ address: ":5514", protocol: udp }`, "exactly_once")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "at-most-once") || !strings.Contains(cfg.Warnings[0].Error(), "use `protocol: tcp`") {
		t.Errorf("udp under exactly_once: warnings %v, want one naming protocol: tcp", cfg.Warnings)
	}
	cfg, err = load(`{ address: ":5514" }`, "exactly_once")
	if err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("tcp under exactly_once: %v, warnings %v, want none", err, cfg.Warnings)
	}
	cfg, err = load(`{ address: ":5514", protocol: udp }`, "at_most_once")
	if err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("udp under at_most_once: %v, warnings %v, want none", err, cfg.Warnings)
	}
	for src, want := range map[string]string{
		`{ address: ":5514", protocol: sctp }`:                                    "s.yaml:6",
		`{ address: ":5514", framing: crlf }`:                                     "framing",
		`{ protocol: tcp }`:                                                       "address is required",
		`{ address: ":5514", protocol: udp, tls: { cert_file: a, key_file: b } }`: "tls is for protocol tcp",
		`{ address: ":5514", max_message_bytes: 4 }`:                              "max_message_bytes",
	} {
		if _, err := load(src, "exactly_once"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", src, err, want)
		}
	}
}

// TestSyslogPipelineParsed: syslog over TCP → parse (format: syslog, the
// parse operator's RFC 5424/3164 parser) → file, under exactly_once;
// a line that is not syslog goes to the dead-letter output from the
// parser, a lost frame from the source.
func TestSyslogPipelineParsed(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	out, deadFile := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "dead.jsonl")
	cfg, err := pipeline.Default.Load("s.yaml", fmt.Appendf(nil, `
data_dir: %s
pipelines:
  - name: syslog
    checkpoint_interval: 100ms
    sources:
      - syslog: { address: "%s" }
    operators:
      - parse: { format: syslog }
    sinks:
      - file: { path: %s }
    dead_letter:
      file: { path: %s }
`, filepath.Join(dir, "data"), addr, out, deadFile))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runtime.Run(context.Background(), cfg, nil, stop, runtime.Options{}) }()
	waitListening(t, addr, done)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msg5424 := `<165>1 2026-12-03T10:00:00Z web01 nginx 42 ID7 [ex@32473 k="v"] started`
	fmt.Fprintf(c, "%d %s<34>Oct 11 22:14:15 mymachine su: 'su root' failed\nnot syslog at all\n", len(msg5424), msg5424)
	fmt.Fprintf(c, "77777777777 lost\n")
	c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for len(outLines(t, out)) < 2 || len(outLines(t, deadFile)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, dead %q after 20s", outLines(t, out), outLines(t, deadFile))
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := outLines(t, out)
	var first, second map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[1]), &second)
	if first["hostname"] != "web01" || first["appname"] != "nginx" || first["severity"] != "notice" || first["message"] != "started" {
		t.Errorf("RFC 5424 record %s", lines[0])
	}
	if second["hostname"] != "mymachine" || second["appname"] != "su" || second["facility"] != "auth" {
		t.Errorf("RFC 3164 record %s", lines[1])
	}
	dead := strings.Join(outLines(t, deadFile), "\n")
	if !strings.Contains(dead, "not syslog at all") || !strings.Contains(dead, `"framing"`) || !strings.Contains(dead, "77777777777") {
		t.Errorf("dead letters %s, want the unparsable line (parse) and the lost frame (framing)", dead)
	}
	if len(lines) != 2 {
		t.Errorf("%d records written, want 2", len(lines))
	}
}

func TestSyslogTCPIdleTimeout(t *testing.T) {
	s := newSyslogTestSource(t, func(c *SyslogConfig) { c.IdleTimeout = 100 * time.Millisecond; c.MaxConnections = 1 })
	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "<1>partial line without its newline")
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF (closed by weir after idle_timeout)", err)
	}
	if recs, _ := readSyslog(t, s, 1); fmt.Sprint(recs) != "[<1>partial line without its newline]" {
		t.Fatalf("read %q, want the partial last line taken as sent", recs)
	}
	if len(s.slots) != 0 {
		// the slot is given back as the reader returns; poll briefly
		deadline := time.Now().Add(10 * time.Second)
		for len(s.slots) != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if len(s.slots) != 0 {
			t.Fatal("the idle connection's slot was not given back")
		}
	}
}
