package wal

import (
	"fmt"
	"log/slog"
	"time"
)

// SyncMode says when appended records are fsynced.
type SyncMode int

const (
	// SyncAlways makes Append return only after an fsync (fdatasync on
	// Linux) that covers its records. Concurrent appends share fsyncs.
	SyncAlways SyncMode = iota
	// SyncInterval makes Append return once its records are written to the
	// operating system; the Log fsyncs every Options.SyncInterval while
	// there is unsynced data. A crash of the machine (not just of the
	// process) may lose up to that interval of acknowledged records.
	SyncInterval
	// SyncNone makes Append return once its records are written to the
	// operating system; the Log fsyncs only when it rolls to a new segment
	// and on Close.
	SyncNone
)

// String returns "always", "interval" or "none".
func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// ParseSyncMode parses "always", "interval" or "none".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("wal: parse sync mode %q: want always, interval or none", s)
}

// Options configure Open. The zero value is valid.
type Options struct {
	// SegmentSize is the size in bytes past which the Log rolls to a new
	// segment; a segment exceeds it only when it holds a single record
	// larger than that. Zero or negative means 64 MiB.
	SegmentSize int64
	// Sync says when appended records are fsynced. The default is SyncAlways.
	Sync SyncMode
	// SyncInterval is the fsync period for SyncInterval. Zero or negative
	// means 100ms.
	SyncInterval time.Duration
	// Logger receives warnings (torn tails truncated on Open) and errors
	// (a failed write or fsync). Nil means no logging.
	Logger *slog.Logger
}

const (
	defaultSegmentSize  = 64 << 20
	defaultSyncInterval = 100 * time.Millisecond
)

func (o Options) withDefaults() (Options, error) {
	if o.SegmentSize <= 0 {
		o.SegmentSize = defaultSegmentSize
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = defaultSyncInterval
	}
	if o.Sync < SyncAlways || o.Sync > SyncNone {
		return o, fmt.Errorf("wal: invalid sync mode %d", int(o.Sync))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
