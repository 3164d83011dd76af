package operators

import (
	"testing"
	"time"
)

func TestParseCombined(t *testing.T) {
	pdt := time.FixedZone("", -7*3600)
	parseTestTable(t, `- parse: {format: combined}`, []parseTestCase{
		{name: "apache docs line",
			line: `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
			want: []parseTestKV{
				{"remote_addr", "127.0.0.1"}, {"ident", nil}, {"user", "frank"},
				{"time", time.Date(2000, 10, 10, 13, 55, 36, 0, pdt)},
				{"method", "GET"}, {"path", "/apache_pb.gif"}, {"protocol", "HTTP/1.0"},
				{"status", int64(200)}, {"bytes", int64(2326)},
				{"referer", "http://www.example.com/start.html"}, {"user_agent", "Mozilla/4.08 [en] (Win98; I ;Nav)"},
			}},
		{name: "dash bytes and referer",
			line: `2001:db8::1 - - [24/Nov/2026:22:33:58 +0000] "HEAD / HTTP/1.1" 304 - "-" "curl/8.5.0"` + "\n",
			want: []parseTestKV{
				{"remote_addr", "2001:db8::1"}, {"ident", nil}, {"user", nil},
				{"time", time.Date(2026, 11, 24, 22, 33, 58, 0, time.FixedZone("", 0))},
				{"method", "HEAD"}, {"path", "/"}, {"protocol", "HTTP/1.1"},
				{"status", int64(304)}, {"bytes", int64(0)}, {"referer", nil}, {"user_agent", "curl/8.5.0"},
			}},
		{name: "escaped quotes, odd request",
			line: `10.0.0.2 - - [01/Jan/2026:00:00:00 +0100] "\x16\x03\x01" 400 226 "-" "say \"hi\" \\o/"`,
			want: []parseTestKV{
				{"remote_addr", "10.0.0.2"}, {"ident", nil}, {"user", nil},
				{"time", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600))},
				{"method", nil}, {"path", `\x16\x03\x01`}, {"protocol", nil},
				{"status", int64(400)}, {"bytes", int64(226)}, {"referer", nil}, {"user_agent", `say "hi" \o/`},
			}},
		{name: "empty request, HTTP/0.9",
			line: `h - - [01/Jan/2026:00:00:00 +0000] "-" 408 0 "-" "-"`,
			want: []parseTestKV{
				{"remote_addr", "h"}, {"ident", nil}, {"user", nil},
				{"time", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 0))},
				{"method", nil}, {"path", nil}, {"protocol", nil},
				{"status", int64(408)}, {"bytes", int64(0)}, {"referer", nil}, {"user_agent", nil},
			}},
		{name: "spaces in path",
			line: `h - - [01/Jan/2026:00:00:00 +0000] "GET /a b HTTP/1.1" 200 1 "-" "-"`,
			want: []parseTestKV{
				{"remote_addr", "h"}, {"ident", nil}, {"user", nil},
				{"time", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 0))},
				{"method", "GET"}, {"path", "/a b"}, {"protocol", "HTTP/1.1"},
				{"status", int64(200)}, {"bytes", int64(1)}, {"referer", nil}, {"user_agent", nil},
			}},

		{name: "common line", line: `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`,
			wantErr: "parse: combined: missing referer at offset 72"},
		{name: "extra field", line: `h - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-" "1.2.3.4"`,
			wantErr: "parse: combined: unexpected text after the last field at offset 66"},
		{name: "bad time", line: `h - - [2026-01-01T00:00:00Z] "GET / HTTP/1.1" 200 1 "-" "-"`,
			wantErr: `parse: combined: time "2026-01-01T00:00:00Z" is not like 10/Oct/2000:13:55:36 -0700`},
		{name: "no bracket", line: `h - - 01/Jan/2026:00:00:00 "GET / HTTP/1.1" 200 1 "-" "-"`,
			wantErr: "parse: combined: want [ to open time at offset 6"},
		{name: "unclosed quote", line: `h - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1 200 1`,
			wantErr: `parse: combined: unclosed " of request at offset 35`},
		{name: "bad status", line: `h - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" OK 1 "-" "-"`,
			wantErr: `parse: combined: status "OK" is not a number`},
		{name: "bad bytes", line: `h - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1k "-" "-"`,
			wantErr: `parse: combined: bytes "1k" is neither a number nor -`},
		{name: "not an access log", line: `hello`, wantErr: "parse: combined: missing ident at offset 5"},
		{name: "empty", line: ``, wantErr: "parse: combined: empty line"},
	})
}

func TestParseCommon(t *testing.T) {
	pdt := time.FixedZone("", -7*3600)
	parseTestTable(t, `- parse: {format: common}`, []parseTestCase{
		{name: "apache docs line", line: `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
			want: []parseTestKV{
				{"remote_addr", "127.0.0.1"}, {"ident", nil}, {"user", "frank"},
				{"time", time.Date(2000, 10, 10, 13, 55, 36, 0, pdt)},
				{"method", "GET"}, {"path", "/apache_pb.gif"}, {"protocol", "HTTP/1.0"},
				{"status", int64(200)}, {"bytes", int64(2326)},
			}},
		{name: "combined line", line: `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "-"`,
			wantErr: "parse: common: unexpected text after the last field at offset 73"},
	})
	parseTestTable(t, `- parse: {format: common, infer_types: false}`, []parseTestCase{
		{name: "text status and bytes", line: `::1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 -`,
			want: []parseTestKV{
				{"remote_addr", "::1"}, {"ident", nil}, {"user", nil},
				{"time", time.Date(2000, 10, 10, 13, 55, 36, 0, pdt)},
				{"method", "GET"}, {"path", "/"}, {"protocol", "HTTP/1.0"},
				{"status", "200"}, {"bytes", "-"},
			}},
	})
}
