package sinks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compressed output of the file sink (`compression: gzip | zstd`).
//
// A compressed file is a sequence of complete gzip members or zstd frames,
// one per stretch of writing: each checkpoint's staged bytes of a file
// (exactly_once), each interval between two flushes (at_least_once), and
// each time max_open_files closes the file in between. Concatenated
// members and frames are one valid file for gzip, zcat, zstd -d and every
// library that reads them, and a file's committed or flushed length always
// falls between two of them, so cutting a file back to it (recovery, a
// crash under at_least_once) leaves a valid file.

// Compression names a file sink's output compression.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
)

// memberWriter compresses one member (gzip) or frame (zstd) at a time into
// the writer given to Reset; Close ends the member.
type memberWriter interface {
	io.WriteCloser
	Reset(w io.Writer)
}

type zstdMember struct{ *zstd.Encoder }

func (z zstdMember) Reset(w io.Writer) { z.Encoder.Reset(w) }

// newMemberWriter returns a compressor for kind writing to w.
func newMemberWriter(kind string, w io.Writer) (memberWriter, error) {
	switch kind {
	case CompressionGzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case CompressionZstd:
		e, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil, err
		}
		return zstdMember{e}, nil
	}
	return nil, fmt.Errorf("file: unknown compression %q", kind)
}

// stagedCounter counts the compressed bytes that reach a stream's file.
type stagedCounter struct {
	w  io.Writer
	st *fileStream
}

func (c *stagedCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.st.size += int64(n)
	c.st.staged += int64(n)
	return n, err
}

// completeLength returns the length of the complete gzip members or zstd
// frames at the start of f: where a file torn by a crash in the middle of
// a member is to be cut. A gzip file is read through (a member's end is
// known only by decoding it); a zstd file is walked by its frame and
// block headers.
func completeLength(f *os.File, kind string) (int64, error) {
	switch kind {
	case CompressionGzip:
		return gzipCompleteLength(f)
	case CompressionZstd:
		return zstdCompleteLength(f)
	}
	return 0, fmt.Errorf("file: unknown compression %q", kind)
}

// byteCounter is a buffered reader that knows how many bytes were
// consumed: gzip reads through io.ByteReader, so it never reads ahead.
type byteCounter struct {
	r *bufio.Reader
	n int64
}

func (b *byteCounter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *byteCounter) ReadByte() (byte, error) {
	c, err := b.r.ReadByte()
	if err == nil {
		b.n++
	}
	return c, err
}

func gzipCompleteLength(f *os.File) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	r := &byteCounter{r: bufio.NewReaderSize(f, 64<<10)}
	var good int64
	zr := new(gzip.Reader)
	for {
		if _, err := r.r.Peek(1); err == io.EOF {
			return good, nil
		}
		if err := zr.Reset(r); err != nil {
			return good, nil // not a gzip header: cut here
		}
		zr.Multistream(false)
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return good, nil // torn or damaged member
		}
		good = r.n
	}
}

func zstdCompleteLength(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	var off int64
	head := make([]byte, zstd.HeaderMaxSize)
	for off < size {
		n, err := f.ReadAt(head, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		var h zstd.Header
		rest, err := h.DecodeAndStrip(head[:n])
		if err != nil {
			return off, nil
		}
		if h.Skippable {
			end := off + 8 + int64(h.SkippableSize)
			if end > size {
				return off, nil
			}
			off = end
			continue
		}
		pos := off + int64(n-len(rest)) // past the frame header: the first block's header
		for {
			var bh [3]byte
			if pos+3 > size {
				return off, nil
			}
			if _, err := f.ReadAt(bh[:], pos); err != nil {
				return 0, err
			}
			v := uint32(bh[0]) | uint32(bh[1])<<8 | uint32(bh[2])<<16
			last, typ, bsize := v&1 == 1, (v>>1)&3, int64(v>>3)
			switch typ {
			case 1: // RLE: one byte repeated
				bsize = 1
			case 3: // reserved: not a frame weir wrote
				return off, nil
			}
			pos += 3 + bsize
			if pos > size {
				return off, nil
			}
			if last {
				break
			}
		}
		if h.HasCheckSum {
			pos += 4
		}
		if pos > size {
			return off, nil
		}
		off = pos
	}
	return off, nil
}

// endMember ends st's current member or frame, if one was started: its
// bytes go to st's buffer (counted), and the next write starts another.
func (s *FileSink) endMember(st *fileStream) error {
	if st.enc == nil {
		return nil
	}
	err := st.enc.Close()
	s.encoders = append(s.encoders, st.enc)
	st.enc = nil
	if err != nil {
		return fmt.Errorf("file: compress %s: %w", st.final, err)
	}
	return nil
}

// writeCompressed compresses line into st's current member, starting one
// as needed.
func (s *FileSink) writeCompressed(st *fileStream, line []byte) error {
	if st.enc == nil {
		cw := &stagedCounter{w: st.w, st: st}
		if n := len(s.encoders); n > 0 {
			st.enc, s.encoders = s.encoders[n-1], s.encoders[:n-1]
			st.enc.Reset(cw)
		} else {
			enc, err := newMemberWriter(s.cfg.Compression, cw)
			if err != nil {
				return err
			}
			st.enc = enc
		}
	}
	if _, err := st.enc.Write(line); err != nil {
		return fmt.Errorf("file: write %s: %w", st.final, err)
	}
	return nil
}

// cutTornMember truncates f after its last complete member or frame, and
// returns its length (at_least_once and at_most_once, when a stream opens
// a file that may have been torn by a crash).
func (s *FileSink) cutTornMember(f *os.File, name string) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("file: %w", err)
	}
	end, err := completeLength(f, s.cfg.Compression)
	if err != nil {
		return 0, fmt.Errorf("file: read %s: %w", name, err)
	}
	if end == fi.Size() {
		return end, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, fmt.Errorf("file: cut torn member of %s: %w", name, err)
	}
	s.logger.Warn("file: cut an incomplete compressed member at the end (torn by a crash); its records are written again", "file", name, "bytes", fi.Size()-end)
	return end, nil
}
