// Package wal implements weir's segmented write-ahead log.
//
// Sources that cannot replay (stdin, RabbitMQ, MQTT, NATS) append every
// incoming record to a Log and acknowledge upstream only once Append has
// returned. After a crash weir reopens the Log and replays it with a Reader
// from the index saved in its last checkpoint; segments wholly below the
// oldest index any checkpoint still needs are removed with TruncateBefore.
// Another process may follow a Log's directory read-only with OpenReader.
//
// # Indexes
//
// Every record has a uint64 index. The first record ever appended to a
// directory has index 0 and indexes are contiguous across segments, so a
// Log whose FirstIndex equals its NextIndex holds no records.
//
// # On-disk format (version 1)
//
// All integers are little-endian. All checksums are CRC-32C (Castagnoli).
//
// A Log is a directory of segment files plus a file named LOCK, which an
// open Log holds an exclusive flock(2) on. A segment is named after the
// index of its first record, zero-padded to 20 decimal digits so that names
// sort in index order:
//
//	00000000000000000042.wal   segment whose first record has index 42
//	00000000000000000042.tmp   segment being created; removed by Open
//
// Other file names are ignored. Each segment starts with a 24-byte header:
//
//	offset size field
//	     0    8 magic "WEIRWAL\n"
//	     8    4 format version, 1
//	    12    8 index of the segment's first record; equals the file name
//	    20    4 CRC-32C of bytes 0..19
//
// The header is followed by zero or more frames, one per record, back to
// back with no padding:
//
//	offset size field
//	     0    4 bits 0..27: payload length n; bits 28..31: frame type, 1 = record
//	     4    4 CRC-32C of frame bytes 0..3, then the record's index as
//	            8 bytes, then the payload
//	     8    n payload
//
// A payload is at most MaxRecordSize bytes. Type 0 is never written, so
// zero-filled space never parses as a frame; covering the index in the
// checksum means a frame copied to, or left over at, the wrong position
// does not verify. A frame never crosses segments: when the next frame
// would take the active segment past Options.SegmentSize (and the segment
// already holds a record) the Log rolls to a new segment first, so whole
// segments can be deleted safely. A record larger than SegmentSize gets a
// segment of its own.
//
// A new segment is written as N.tmp (header only), fsynced, renamed to
// N.wal and the directory is fsynced, so a segment file under its final
// name always has a complete header. The previous segment is fsynced
// before its successor is created, in every sync mode, so every segment
// but the last is complete.
//
// # Torn tails and corruption
//
// Only the last segment may end in a torn tail: the bytes written by a
// write that was interrupted by a crash before its fsync completed. Let X be
// the offset of the first frame of the last segment that does not verify
// (record index i). The bytes from X to the end of the file are a torn tail
// if no valid frame for index i+1 starts anywhere after X, and either
//
//   - the frame at X is incomplete: fewer than 8 bytes remain, or its
//     length field claims more bytes than remain, or
//   - every byte after the frame at X is zero (the frame's extent is its
//     8-byte header when its type or length field is invalid).
//
// A last segment whose header does not verify is torn if its bytes are a
// prefix (possibly empty) of the header its name implies followed only by
// zeros: it holds no records. Open truncates a torn tail, or re-creates a
// segment with a torn header, fsyncs, and logs at Warn level. Verify
// reports a torn tail without touching it; TruncateTornTail removes the
// one Verify reported, as Open would.
//
// Anything else is corruption and makes Open, Verify, Stat and Readers
// return a *CorruptionError naming the segment and byte offset; bytes are
// never skipped silently. That includes a bad frame anywhere in a segment
// that is not the last, a bad frame followed by further data, a bad or
// mismatched segment header, and a missing segment: each segment's first
// index must equal the previous segment's first index plus its record
// count. (A missing first or last segment cannot be told apart from a
// truncated or empty log.)
//
// # Durability
//
// Appenders copy their records into a shared buffer under a mutex and get
// their indexes immediately; one flusher goroutine writes the buffer to the
// active segment and, in SyncAlways mode, fdatasyncs it, waking every
// Append the sync covered (group commit). When the previous commit
// released several Appends, the flusher first yields to runnable goroutines
// for as long as they keep adding to the buffer, so writers just released
// by one commit join the next one instead of splitting into two
// alternating groups. In SyncInterval mode Append
// returns once its records are written to the operating system and the
// flusher syncs at most every Options.SyncInterval; in SyncNone mode the
// data is synced only at segment rolls and Close. A failed write or sync
// leaves the Log failed: every later Append returns the error, since a
// failed fsync cannot be retried safely.
//
// # Example
//
//	l, err := wal.Open("/var/lib/weir/wal/stdin", wal.Options{})
//	if err != nil {
//		return err
//	}
//	defer l.Close()
//	first, err := l.Append(ctx, []byte("a"), []byte("b")) // durable on return
//	if err != nil {
//		return err
//	}
//	ack(first, first+1)
//
//	// After a restart: replay from the checkpoint, then drop old segments.
//	r, err := l.NewReader(checkpoint)
//	if err != nil {
//		return err
//	}
//	defer r.Close()
//	for {
//		index, data, err := r.Next()
//		if err == io.EOF {
//			break
//		} else if err != nil {
//			return err
//		}
//		process(index, data) // data is only valid until the next call
//	}
//	return l.TruncateBefore(checkpoint)
package wal
