package operators

import (
	"errors"
	"fmt"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/auto"
	"github.com/leodido/go-syslog/v4/common"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/weirhq/weir/pipeline"
)

// syslogParser reads RFC 5424 and RFC 3164 (BSD) lines with
// github.com/leodido/go-syslog/v4, strictly (no best-effort recovery: a
// line that does not parse whole is an error).
//
// Fields, in this order, nil when the line has no value for them (a `-`):
//
//	RFC 5424: priority, facility, severity, version, timestamp, hostname,
//	          appname, procid, msgid, structured_data, message
//	RFC 3164: priority, facility, severity, timestamp, hostname, appname,
//	          procid, message
//
// priority and version are int64; facility and severity are keywords
// ("local4", "notice"); timestamp is a time.Time; structured_data maps each
// SD-ID to a map of its parameters (strings).
//
// RFC 3164 lines may omit the priority (as in /var/log/syslog files), may
// carry an RFC 3339 timestamp instead of "Jan _2 15:04:05", and may write
// the day with a leading zero. A BSD timestamp has no zone and no year: it
// is read in the configured zone, and given the latest year that does not
// put it more than a week after the record's Time (or, for a record
// without one, the clock), so a December line read in January lands in the
// year before. Set the record's Time at the source for a reproducible year.
type syslogParser struct {
	m   syslog.Machine // not safe for concurrent use: one per operator
	loc *time.Location
	now func() time.Time
}

func newSyslogParser(rfc string, loc *time.Location, now func() time.Time) *syslogParser {
	opts3164 := []syslog.MachineOption{rfc3164.WithRFC3339(), rfc3164.WithOptionalPriority(), rfc3164.WithLenientDay()}
	if loc != time.UTC {
		opts3164 = append(opts3164, rfc3164.WithLocaleTimezone(loc))
	}
	p := &syslogParser{loc: loc, now: now}
	switch rfc {
	case "5424":
		p.m = rfc5424.NewMachine()
	case "3164":
		p.m = rfc3164.NewMachine(opts3164...)
	default:
		p.m = auto.NewMachine(auto.WithRFC3164Options(opts3164...))
	}
	return p
}

// syslogFacilities and syslogSeverities are the RFC 5427 keywords by code.
var syslogFacilities, syslogSeverities [24]string

func init() {
	for code, kw := range common.FacilityKeywords {
		if int(code) < len(syslogFacilities) {
			syslogFacilities[code] = kw
		}
	}
	for code, kw := range common.SeverityLevelsShort {
		if int(code) < len(syslogSeverities) {
			syslogSeverities[code] = kw
		}
	}
}

func (p *syslogParser) parse(r *pipeline.Record, line string, out []parsedField) ([]parsedField, error) {
	line = parseTrimEOL(line)
	if line == "" {
		return out, errParseEmptyLine
	}
	msg, err := p.machineParse(parseBytesOf(line))
	if err != nil {
		var pe *auto.ParseError
		if errors.As(err, &pe) && pe.Err != nil {
			err = pe.Err
		}
		return out, err
	}
	switch m := msg.(type) {
	case *rfc5424.SyslogMessage:
		out = appendSyslogHead(out, &m.Base)
		out = append(out, parsedField{name: "version", val: int64(m.Version)})
		out = append(out, parsedField{name: "timestamp", val: syslogTime(m.Timestamp)})
		out = append(out,
			parsedField{name: "hostname", val: syslogString(m.Hostname)},
			parsedField{name: "appname", val: syslogString(m.Appname)},
			parsedField{name: "procid", val: syslogString(m.ProcID)},
			parsedField{name: "msgid", val: syslogString(m.MsgID)},
			parsedField{name: "structured_data", val: syslogStructuredData(m.StructuredData)},
			parsedField{name: "message", val: syslogString(m.Message)},
		)
	case *rfc3164.SyslogMessage:
		out = appendSyslogHead(out, &m.Base)
		var ts any
		if m.Timestamp != nil {
			ts = p.withYear(*m.Timestamp, r.Time)
		}
		out = append(out,
			parsedField{name: "timestamp", val: ts},
			parsedField{name: "hostname", val: syslogString(m.Hostname)},
			parsedField{name: "appname", val: syslogString(m.Appname)},
			parsedField{name: "procid", val: syslogString(m.ProcID)},
			parsedField{name: "message", val: syslogString(m.Message)},
		)
	default:
		return out, fmt.Errorf("unexpected message type %T", msg)
	}
	return out, nil
}

// machineParse runs the library's parser, turning a panic on odd input
// into an error: bad data must never stop the pipeline.
func (p *syslogParser) machineParse(b []byte) (msg syslog.Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			msg, err = nil, fmt.Errorf("syslog parser failed: %v", v)
		}
	}()
	msg, err = p.m.Parse(b)
	if err == nil && msg == nil {
		err = errors.New("not a syslog message")
	}
	return msg, err
}

func appendSyslogHead(out []parsedField, b *syslog.Base) []parsedField {
	var pri, fac, sev any
	if b.Priority != nil {
		pri = int64(*b.Priority)
	}
	if b.Facility != nil && int(*b.Facility) < len(syslogFacilities) {
		fac = syslogFacilities[*b.Facility]
	}
	if b.Severity != nil && int(*b.Severity) < len(syslogSeverities) {
		sev = syslogSeverities[*b.Severity]
	}
	return append(out, parsedField{name: "priority", val: pri}, parsedField{name: "facility", val: fac}, parsedField{name: "severity", val: sev})
}

// syslogYearSlack is how far after the reference time a BSD timestamp may
// fall and still be given the reference's year (or the next): lines are
// read after they are written, save for clock skew between hosts.
const syslogYearSlack = 7 * 24 * time.Hour

// withYear gives a BSD timestamp, parsed without a year, the latest year
// that puts it no more than syslogYearSlack after ref (or the clock when
// ref is zero): a December line read on January 1st is from last year, a
// January 1st line read on December 31st at midnight from next year.
// Timestamps that carry a year (RFC 3339 ones) are returned as they are.
func (p *syslogParser) withYear(t, ref time.Time) time.Time {
	if t.Year() != 0 {
		return t
	}
	if ref.IsZero() {
		ref = p.now()
	}
	ref = ref.In(p.loc)
	latest := ref.Add(syslogYearSlack)
	mon, day := t.Month(), t.Day()
	h, m, s := t.Clock()
	for y := ref.Year() + 1; y >= ref.Year()-4; y-- {
		c := time.Date(y, mon, day, h, m, s, t.Nanosecond(), p.loc)
		if c.Day() != day {
			continue // Feb 29 outside a leap year
		}
		if !c.After(latest) {
			return c
		}
	}
	// Unreachable for a valid date; keep the parsed value rather than fail.
	return time.Date(ref.Year(), mon, day, h, m, s, t.Nanosecond(), p.loc)
}

func syslogStructuredData(sd *map[string]map[string]string) any {
	if sd == nil || *sd == nil {
		return nil
	}
	out := make(map[string]any, len(*sd))
	for id, params := range *sd {
		m := make(map[string]any, len(params))
		for k, v := range params {
			m[k] = v
		}
		out[id] = m
	}
	return out
}

func syslogString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func syslogTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}
