package runtime

// SetIngestSegmentSize makes the segments of ingest WALs n bytes, so that
// a test sees them truncated; the returned function restores the default.
func SetIngestSegmentSize(n int64) (restore func()) {
	old := ingestSegmentSize
	ingestSegmentSize = n
	return func() { ingestSegmentSize = old }
}
