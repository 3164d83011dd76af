package sources

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/weirhq/weir/internal/connect"
	"github.com/weirhq/weir/pipeline"
)

func init() {
	pipeline.RegisterSource("syslog",
		"a syslog server: TCP (newline framing or RFC 6587 octet counting, TLS) or UDP",
		NewSyslogConfig)
}

// SyslogConfig is the `syslog:` source: a syslog server that turns every
// message it receives into one record whose value is the message as sent
// (its framing removed). Parse it with the parse operator, which reads
// RFC 5424 and RFC 3164:
//
//	sources:
//	  - syslog: { address: ":6514", protocol: tcp,
//	              tls: { cert_file: server.pem, key_file: server.key } }
//	operators:
//	  - parse: { format: syslog }
//
// TCP framing (RFC 6587), per message: with `framing: auto` (the
// default) a message that starts with a digit is octet-counted ("57 <34>1
// ..."), any other ends at a newline (a trailing "\r" dropped, empty lines
// skipped); `octet_counting` and `newline` ask for one kind only. A
// message over max_message_bytes goes to the dead-letter output (reason
// too_long, its first max_message_bytes kept): after a newline-framed one,
// reading goes on at the next newline; an octet count over the limit, or
// a count that is not a number, means the framing is lost: the frame goes
// to the dead-letter output (reason framing) and the connection is closed,
// as nothing after it can be trusted. A sender reconnects. An
// octet-counted frame cut short by the end of the connection (or by
// idle_timeout) goes to the dead-letter output too (reason truncated); a
// last newline-framed line without its newline is taken as sent.
//
// UDP (RFC 5426): one datagram is one message (trailing newlines dropped).
//
// Delivery: syslog has no acknowledgements. Under exactly_once a message
// is durable once it is in the ingest WAL (fsynced before anything
// downstream sees it), and then it is processed exactly once, across
// crashes. What weir had not read into the WAL when it stopped (lines
// still in a sender's buffers, in flight on the network, or in the
// kernel's socket buffers) is the sender's to keep or lose: a TCP sender
// cannot know which of its lines weir had. Under at_least_once the records
// go straight downstream and those not yet committed at a crash are lost.
// UDP is at-most-once whatever the guarantee: a datagram the kernel drops
// while weir is busy or stopped is gone (`weir validate` warns).
type SyslogConfig struct {
	// Address is host:port to listen on (":514", ":6514"). Required.
	Address string `yaml:"address"`
	// Protocol is tcp (default) or udp.
	Protocol string `yaml:"protocol"`
	// Framing is the TCP framing: auto (default), octet_counting or
	// newline.
	Framing string `yaml:"framing"`
	// MaxMessageBytes is the largest message; default 64 KiB.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxConnections is the most TCP connections at once; a connection
	// over it is closed at once. Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a TCP connection that sends nothing for that
	// long; default 10m, 0 for never.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TLS makes the TCP server speak TLS (RFC 5425): cert_file and
	// key_file are the server's; ca_file asks senders for a certificate
	// signed by it.
	TLS *pipeline.TLSOptions `yaml:"tls"`
	// Linger is how long Read keeps collecting after the first message of
	// a batch; default 5ms.
	Linger time.Duration `yaml:"linger"`
}

// NewSyslogConfig returns a SyslogConfig with its defaults.
func NewSyslogConfig() *SyslogConfig {
	return &SyslogConfig{Protocol: "tcp", Framing: "auto", MaxMessageBytes: 64 << 10, MaxConnections: 1024,
		IdleTimeout: 10 * time.Minute, Linger: 5 * time.Millisecond}
}

// Validate implements pipeline.Validator.
func (c *SyslogConfig) Validate() error {
	if c.Address == "" {
		return errors.New("syslog: address is required (host:port, e.g. \":514\")")
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("syslog: address %q: %w", c.Address, err)
	}
	switch c.Protocol {
	case "tcp", "udp":
	default:
		return fmt.Errorf("syslog: protocol %q is not tcp or udp", c.Protocol)
	}
	switch c.Framing {
	case "auto", "octet_counting", "newline":
	default:
		return fmt.Errorf("syslog: framing %q is not auto, octet_counting or newline", c.Framing)
	}
	if c.MaxMessageBytes < 16 || c.MaxMessageBytes > 64<<20 {
		return fmt.Errorf("syslog: max_message_bytes %d is outside 16..67108864", c.MaxMessageBytes)
	}
	if c.MaxConnections < 1 {
		return errors.New("syslog: max_connections must be at least 1")
	}
	if c.IdleTimeout < 0 || c.Linger < 0 {
		return errors.New("syslog: durations must not be negative")
	}
	if c.Protocol == "udp" && c.TLS != nil {
		return errors.New("syslog: tls is for protocol tcp (syslog over DTLS is not supported)")
	}
	return validateServerTLS("syslog", c.TLS)
}

// GuaranteeWarning implements pipeline.GuaranteeWarner: UDP cannot keep
// exactly_once or at_least_once, and TCP syslog without the WAL loses
// what was read but not committed at a crash.
func (c *SyslogConfig) GuaranteeWarning(g pipeline.Guarantee) string {
	switch {
	case c.Protocol == "udp" && g != pipeline.AtMostOnce:
		return fmt.Sprintf("syslog source with `protocol: udp` is at-most-once under %s: a datagram dropped by the kernel while weir is busy, restarting or stopped is lost, and the sender never knows; "+
			"use `protocol: tcp` for %s (a TCP sender such as rsyslog's omfwd with a disk queue keeps its lines while weir is away)", g, g)
	case c.Protocol == "tcp" && g == pipeline.AtLeastOnce:
		return "syslog source under at_least_once: syslog over TCP has no acknowledgements, so lines read but not yet committed when weir crashes are lost; use `guarantee: exactly_once`, which writes them to the ingest WAL before anything else"
	}
	return ""
}

// NewSource implements pipeline.SourceConfig. It listens before returning.
func (c *SyslogConfig) NewSource(b pipeline.Build) (pipeline.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &syslogSource{cfg: *c, index: b.Index, batch: b.BatchSize, component: b.Component, logger: b.Logger, now: b.Now,
		done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	if s.batch <= 0 {
		s.batch = pipeline.DefaultBatchSize
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.frames = make(chan []syslogFrame, 64)
	if c.Protocol == "udp" {
		pc, err := net.ListenPacket("udp", c.Address)
		if err != nil {
			return nil, fmt.Errorf("syslog: listen on udp %s: %w", c.Address, err)
		}
		s.pc, s.addr = pc, pc.LocalAddr()
		s.wg.Add(1)
		go s.serveUDP()
		return s, nil
	}
	tlsCfg, err := serverTLSConfig(c.TLS)
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	ln, err := net.Listen("tcp", c.Address)
	if err != nil {
		return nil, fmt.Errorf("syslog: listen on tcp %s: %w", c.Address, err)
	}
	s.addr = ln.Addr()
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.ln = ln
	s.slots = make(chan struct{}, c.MaxConnections)
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// syslogFrame is one message read, or one frame that goes to the
// dead-letter output (reason set).
type syslogFrame struct {
	value  []byte
	peer   string
	offset int64 // the message's number on its connection (0-based), or datagram count
	reason string
	err    error
}

// syslogSource implements pipeline.Source.
//
// One goroutine per TCP connection (or one for the UDP socket) reads
// messages and hands them to Read through frames, in chunks; a full
// channel blocks the reader, which stops reading the socket: TCP
// backpressure on the sender (UDP: the kernel drops datagrams).
type syslogSource struct {
	cfg       SyslogConfig
	index     int
	batch     int
	component string
	logger    *slog.Logger
	now       func() time.Time
	addr      net.Addr
	ln        net.Listener   // TCP
	pc        net.PacketConn // UDP
	slots     chan struct{}  // one token per open TCP connection

	frames chan []syslogFrame // from the readers to Read
	done   chan struct{}      // closed by Close
	once   sync.Once
	wg     sync.WaitGroup // the accept loop and the readers

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}

	pending []syslogFrame // frames of a chunk that did not fit the last batch
}

// Addr returns the address the server listens on.
func (s *syslogSource) Addr() net.Addr { return s.addr }

func (s *syslogSource) acceptLoop() {
	defer s.wg.Done()
	var bo connect.Backoff
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || !errors.Is(err, net.ErrClosed) {
				s.logger.Warn("syslog: accept", "err", err)
				if connect.SleepContext(context.Background(), bo.Next()) == nil {
					continue
				}
			}
			return
		}
		bo.Reset()
		select {
		case s.slots <- struct{}{}:
		default:
			s.logger.Warn("syslog: connection refused: max_connections reached", "peer", c.RemoteAddr().String(), "max_connections", s.cfg.MaxConnections)
			c.Close()
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// send hands a chunk to Read; false once the source is closing.
func (s *syslogSource) send(chunk []syslogFrame) bool {
	if len(chunk) == 0 {
		return true
	}
	select {
	case s.frames <- chunk:
		return true
	case <-s.done:
		return false
	}
}

const syslogChunk = 256

func (s *syslogSource) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		<-s.slots
	}()
	peer := c.RemoteAddr().String()
	fr := newSyslogFramer(c, s.cfg.Framing, s.cfg.MaxMessageBytes)
	var chunk []syslogFrame
	var n int64
	for {
		if s.cfg.IdleTimeout > 0 && fr.r.Buffered() == 0 {
			c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		msg, reason, err := fr.next()
		switch {
		case reason != "":
			chunk = append(chunk, syslogFrame{value: msg, peer: peer, offset: n, reason: reason, err: err})
			n++
			if fr.lost {
				s.logger.Warn("syslog: framing lost; closing the connection", "peer", peer, "err", err)
				s.send(chunk)
				return
			}
		case err != nil:
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logger.Debug("syslog: connection ends", "peer", peer, "err", err)
			}
			s.send(chunk)
			return
		case msg != nil:
			chunk = append(chunk, syslogFrame{value: msg, peer: peer, offset: n})
			n++
		}
		if len(chunk) >= syslogChunk || fr.r.Buffered() == 0 {
			if !s.send(chunk) {
				return
			}
			chunk = make([]syslogFrame, 0, min(syslogChunk, 2*len(chunk)+1))
		}
	}
}

func (s *syslogSource) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	var n int64
	for {
		size, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logger.Warn("syslog: udp read", "err", err)
			continue
		}
		msg := bytes.TrimRight(buf[:size], "\r\n")
		if len(msg) == 0 {
			continue
		}
		f := syslogFrame{peer: from.String(), offset: n}
		n++
		if len(msg) > s.cfg.MaxMessageBytes {
			f.value = bytes.Clone(msg[:s.cfg.MaxMessageBytes])
			f.reason, f.err = reasonTooLong, fmt.Errorf("syslog: datagram of %d bytes is over max_message_bytes %d; kept its first %d bytes", len(msg), s.cfg.MaxMessageBytes, s.cfg.MaxMessageBytes)
		} else {
			f.value = bytes.Clone(msg)
		}
		if !s.send([]syslogFrame{f}) {
			return
		}
	}
}

// Read implements pipeline.Source: it waits up to 200ms for a first
// message, then collects up to the batch size for at most linger. There
// is nothing to acknowledge (syslog has no acks).
func (s *syslogSource) Read(ctx context.Context, b *pipeline.Batch) (pipeline.AckFunc, error) {
	var got []syslogFrame
	if len(s.pending) > 0 {
		got, s.pending = s.pending, nil
	} else {
		timer := time.NewTimer(readWait)
		select {
		case got = <-s.frames:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-s.done:
			return nil, errors.New("syslog: source closed")
		}
		timer.Stop()
	}
	now := s.now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if room := s.batch - len(b.Records); len(got) > room {
			got, s.pending = got[:room], got[room:]
		}
		recs := pipeline.NewRecords(len(got))
		for i, f := range got {
			r := recs[i]
			r.Value, r.Time, r.Source = f.value, now, s.index
			r.Origin = pipeline.Origin{Name: f.peer, Offset: f.offset}
			if f.reason != "" {
				b.Reject(r, s.component, f.reason, f.err)
				continue
			}
			b.Records = append(b.Records, r)
		}
		if len(b.Records) >= s.batch || s.pending != nil {
			return nil, nil
		}
		if timer == nil {
			timer = time.NewTimer(s.cfg.Linger)
		}
		select {
		case got = <-s.frames:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// Close implements pipeline.Source: it stops listening, closes every
// connection and waits for the readers.
func (s *syslogSource) Close(context.Context) error {
	s.once.Do(func() { close(s.done) })
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// syslogFramer cuts a TCP stream into messages (RFC 6587).
type syslogFramer struct {
	r       *bufio.Reader
	framing string
	max     int
	lost    bool // framing lost: the connection must be closed
}

func newSyslogFramer(r io.Reader, framing string, max int) *syslogFramer {
	return &syslogFramer{r: bufio.NewReaderSize(r, 64<<10), framing: framing, max: max}
}

// next returns the next message (nil for an empty line), or a frame for
// the dead-letter output with its reason (too_long, framing, truncated),
// or a read error (io.EOF at the end). After a frame that sets lost,
// nothing more can be read.
func (f *syslogFramer) next() (msg []byte, reason string, err error) {
	c, err := f.r.Peek(1)
	if err != nil {
		return nil, "", err
	}
	counted := c[0] >= '0' && c[0] <= '9'
	switch f.framing {
	case "octet_counting":
		if !counted {
			return f.lose(nil, "octet_counting: a frame must start with its length, found %q", c[0])
		}
	case "newline":
		counted = false
	}
	if counted {
		return f.counted()
	}
	return f.line()
}

// lose marks framing lost and returns the dead frame: head (what was
// consumed of it) and what is buffered after it, up to max bytes.
func (f *syslogFramer) lose(head []byte, format string, args ...any) ([]byte, string, error) {
	b, _ := f.r.Peek(min(f.r.Buffered(), max(f.max-len(head), 0)))
	f.lost = true
	return append(bytes.Clone(head), b...), "framing", fmt.Errorf("syslog: "+format+"; framing lost, connection closed", args...)
}

// counted reads "MSG-LEN SP SYSLOG-MSG": MSG-LEN is 1 to 10 digits, not
// starting with 0.
func (f *syslogFramer) counted() ([]byte, string, error) {
	var headBuf [11]byte
	head := headBuf[:0]
	n := 0
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return f.lose(head, "octet count %q cut short by the end of the connection", head)
			}
			return nil, "", err
		}
		if c == ' ' && len(head) > 0 {
			break
		}
		head = append(head, c)
		if c < '0' || c > '9' || len(head) > 10 || head[0] == '0' {
			return f.lose(head, "octet count %q is not a length of at least 1 followed by a space", head)
		}
		n = n*10 + int(c-'0')
	}
	if n > f.max {
		return f.lose(append(head, ' '), "octet count %d is over max_message_bytes %d", n, f.max)
	}
	msg := make([]byte, n)
	if got, err := io.ReadFull(f.r, msg); err != nil {
		// The connection ended (or went idle) inside the frame: what came
		// of it goes to the dead-letter output.
		f.lost = true
		return msg[:got], "truncated", fmt.Errorf("syslog: octet-counted frame of %d bytes cut short after %d: %v", n, got, err)
	}
	return msg, "", nil
}

// line reads up to a newline, keeping at most max+2 bytes of it in memory.
func (f *syslogFramer) line() ([]byte, string, error) {
	var out []byte
	total := 0
	for {
		frag, err := f.r.ReadSlice('\n')
		total += len(frag)
		if room := f.max + 2 - len(out); room > 0 {
			out = append(out, frag[:min(len(frag), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && total == 0 {
			return nil, "", err
		}
		// A whole line, or the last one without its newline (the
		// connection ended or went idle after it): taken as sent.
		if total <= f.max+2 {
			out = bytes.TrimSuffix(out, []byte("\n"))
			out = bytes.TrimSuffix(out, []byte("\r"))
			if len(out) == 0 {
				return nil, "", nil // an empty line
			}
			if len(out) <= f.max {
				return out, "", nil
			}
		}
		return out[:f.max], reasonTooLong, fmt.Errorf("syslog: message over max_message_bytes %d (%d bytes with its line ending); kept its first %d bytes", f.max, total, f.max)
	}
}
