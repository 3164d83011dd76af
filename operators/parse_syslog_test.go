package operators

import (
	"testing"
	"time"
)

func TestParseSyslog(t *testing.T) {
	parseTestTable(t, `- parse: {format: syslog}`, []parseTestCase{
		{name: "5424 with structured data",
			line: `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event log entry...`,
			want: []parseTestKV{
				{"priority", int64(165)}, {"facility", "local4"}, {"severity", "notice"}, {"version", int64(1)},
				{"timestamp", parseTestTime("2003-10-11T22:14:15.003Z")}, {"hostname", "mymachine.example.com"},
				{"appname", "evntslog"}, {"procid", nil}, {"msgid", "ID47"},
				{"structured_data", map[string]any{
					"exampleSDID@32473":     map[string]any{"iut": "3", "eventSource": "Application", "eventID": "1011"},
					"examplePriority@32473": map[string]any{"class": "high"},
				}},
				{"message", "An application event log entry..."},
			}},
		{name: "5424 escaped SD value and offset time",
			line: `<14>1 2026-11-24T22:33:58.123456+01:00 host app 42 - [meta k="a\"b\]c"] hi` + "\n",
			want: []parseTestKV{
				{"priority", int64(14)}, {"facility", "user"}, {"severity", "info"}, {"version", int64(1)},
				{"timestamp", parseTestTime("2026-11-24T22:33:58.123456+01:00")}, {"hostname", "host"},
				{"appname", "app"}, {"procid", "42"}, {"msgid", nil},
				{"structured_data", map[string]any{"meta": map[string]any{"k": `a"b]c`}}},
				{"message", "hi"},
			}},
		{name: "5424 all nil",
			line: `<0>1 - - - - - -`,
			want: []parseTestKV{
				{"priority", int64(0)}, {"facility", "kern"}, {"severity", "emerg"}, {"version", int64(1)},
				{"timestamp", nil}, {"hostname", nil}, {"appname", nil}, {"procid", nil}, {"msgid", nil},
				{"structured_data", nil}, {"message", nil},
			}},
		{name: "3164",
			line: `<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
			want: []parseTestKV{
				{"priority", int64(34)}, {"facility", "auth"}, {"severity", "crit"},
				{"timestamp", parseTestTime("2026-10-11T22:14:15Z")}, {"hostname", "mymachine"},
				{"appname", "su"}, {"procid", nil}, {"message", "'su root' failed for lonvick on /dev/pts/8"},
			}},
		{name: "3164 with pid and padded day",
			line: `<13>Feb  5 17:32:18 10.0.0.99 myapp[1234]: Use the BFG!`,
			want: []parseTestKV{
				{"priority", int64(13)}, {"facility", "user"}, {"severity", "notice"},
				{"timestamp", parseTestTime("2026-02-05T17:32:18Z")}, {"hostname", "10.0.0.99"},
				{"appname", "myapp"}, {"procid", "1234"}, {"message", "Use the BFG!"},
			}},
		{name: "3164 without priority (a syslog file)",
			line: `Nov 24 22:33:58 myhost sshd[4321]: Accepted publickey for root`,
			want: []parseTestKV{
				{"priority", nil}, {"facility", nil}, {"severity", nil},
				{"timestamp", parseTestTime("2026-11-24T22:33:58Z")}, {"hostname", "myhost"},
				{"appname", "sshd"}, {"procid", "4321"}, {"message", "Accepted publickey for root"},
			}},
		{name: "3164 with RFC 3339 time",
			line: `<13>2025-01-02T03:04:05Z host app: x`,
			want: []parseTestKV{
				{"priority", int64(13)}, {"facility", "user"}, {"severity", "notice"},
				{"timestamp", parseTestTime("2025-01-02T03:04:05Z")}, {"hostname", "host"},
				{"appname", "app"}, {"procid", nil}, {"message", "x"},
			}},
		{name: "garbage", line: `hello world`, wantErr: "parse: syslog: expecting a priority value within angle brackets [col 0]"},
		{name: "bad priority", line: `<999>1 - - - - - -`, wantErr: "parse: syslog: expecting a priority value in the range 1-191 or equal to 0 [col 3]"},
		{name: "truncated", line: `<34>`, wantErr: "parse: syslog: expecting a version value in the range 1-999 [col 4]"},
		{name: "empty", line: ``, wantErr: "parse: syslog: empty line"},
	})
}

func TestParseSyslogRFC(t *testing.T) {
	parseTestTable(t, `- parse: {format: syslog, rfc: 5424}`, []parseTestCase{
		{name: "5424", line: `<14>1 - h a p m - x`, want: []parseTestKV{
			{"priority", int64(14)}, {"facility", "user"}, {"severity", "info"}, {"version", int64(1)},
			{"timestamp", nil}, {"hostname", "h"}, {"appname", "a"}, {"procid", "p"}, {"msgid", "m"},
			{"structured_data", nil}, {"message", "x"},
		}},
		{name: "3164 refused", line: `<34>Oct 11 22:14:15 mymachine su: x`, wantErr: "parse: syslog: expecting a version value in the range 1-999 [col 4]"},
	})
	parseTestTable(t, `- parse: {format: syslog, rfc: 3164}`, []parseTestCase{
		{name: "3164", line: `<34>Oct 11 22:14:15 mymachine su: x`, want: []parseTestKV{
			{"priority", int64(34)}, {"facility", "auth"}, {"severity", "crit"},
			{"timestamp", parseTestTime("2026-10-11T22:14:15Z")}, {"hostname", "mymachine"},
			{"appname", "su"}, {"procid", nil}, {"message", "x"},
		}},
	})
}

// TestParseSyslogYear: a BSD timestamp gets the year that puts it nearest
// to the record's time, in the configured zone.
func TestParseSyslogYear(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	for _, tc := range []struct {
		name string
		op   string
		line string
		at   time.Time // record Time; zero: the operator's clock (parseTestNow, 2026-11-24)
		want time.Time
	}{
		{"clock", `- parse: {format: syslog}`, `<13>Mar  1 10:00:00 h a: m`, time.Time{}, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"record time", `- parse: {format: syslog}`, `<13>Mar  1 10:00:00 h a: m`, time.Date(2031, 3, 2, 0, 0, 0, 0, time.UTC), time.Date(2031, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"december read in january", `- parse: {format: syslog}`, `<13>Dec 31 23:59:59 h a: m`, time.Date(2027, 1, 1, 0, 0, 5, 0, time.UTC), time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"january read in december", `- parse: {format: syslog}`, `<13>Jan  1 00:00:01 h a: m`, time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)},
		{"leap day", `- parse: {format: syslog}`, `<13>Feb 29 12:00:00 h a: m`, time.Date(2029, 1, 10, 0, 0, 0, 0, time.UTC), time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC)},
		{"zone", `- parse: {format: syslog, timezone: Europe/Paris}`, `<13>Jul 14 12:00:00 h a: m`, time.Time{}, time.Date(2026, 7, 14, 12, 0, 0, 0, paris)},
		{"zone winter", `- parse: {format: syslog, timezone: Europe/Paris, rfc: 3164}`, `<13>Jan 14 12:00:00 h a: m`, time.Time{}, time.Date(2026, 1, 14, 12, 0, 0, 0, paris)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parseTestOp(t, tc.op)
			rec := parseTestRecord(tc.line)
			rec.Time = tc.at
			r, d := parseTestRun(t, o, rec)
			if d != nil {
				t.Fatal(d.Error)
			}
			got, ok := r.Get("timestamp").(time.Time)
			if !ok || !parseTestEqual(got, tc.want) {
				t.Errorf("timestamp %v, want %v", r.Get("timestamp"), tc.want)
			}
		})
	}
}

// TestParseSyslogDeadLetterRecord: a dead letter carries the raw line and
// its position at the source.
func TestParseSyslogDeadLetterRecord(t *testing.T) {
	_, d := parseTestRun(t, parseTestOp(t, `- parse: {format: syslog}`), parseTestRecord("garbage"))
	if d == nil {
		t.Fatal("no dead letter")
	}
	out := d.DeadLetterRecord(time.Unix(0, 0))
	want := []parseTestKV{
		{"reason", "parse"}, {"error", "parse: syslog: expecting a priority value within angle brackets [col 0]"},
		{"component", "t/operators[0]/parse"}, {"value", "garbage"}, {"origin", "in.log"}, {"offset", int64(7)}, {"line", int64(2)},
	}
	parseTestCheck(t, out, want)
}
