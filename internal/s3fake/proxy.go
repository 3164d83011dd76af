package s3fake

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of a server that can cut a connection
// after a request went through and before its answer comes back: the
// server did the work, the client never hears of it.
type Proxy struct {
	URL string // http://127.0.0.1:port of the proxy

	ln     net.Listener
	target string
	// cut matches the request lines of the requests whose answer is cut,
	// cuts how many more times; Cuts counts the cuts done.
	mu   sync.Mutex
	cut  func(requestLine string) bool
	cuts int
	Cuts atomic.Int32
}

// NewProxy proxies to the server at url (http://host:port) until the test
// ends.
func NewProxy(t testing.TB, url string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: url[len("http://"):], URL: "http://" + ln.Addr().String()}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

// CutAnswers cuts the connection after each of the next n requests whose
// request line ("POST /lake/k?uploadId=x HTTP/1.1") match accepts, once
// the server starts to answer it.
func (p *Proxy) CutAnswers(match func(requestLine string) bool, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.cuts = match, n
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	var cutNext atomic.Bool
	closeBoth := func() { c.Close(); s.Close() }
	go func() { // client → server
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				line := buf[:n]
				if i := bytes.IndexByte(line, '\n'); i >= 0 {
					line = line[:i]
				}
				p.mu.Lock()
				if p.cuts > 0 && bytes.HasSuffix(bytes.TrimSpace(line), []byte("HTTP/1.1")) && p.cut(string(line)) {
					p.cuts--
					cutNext.Store(true)
				}
				p.mu.Unlock()
				if _, werr := s.Write(buf[:n]); werr != nil {
					closeBoth()
					return
				}
			}
			if err != nil {
				closeBoth()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for { // server → client
		n, err := s.Read(buf)
		if n > 0 && cutNext.Load() {
			p.Cuts.Add(1)
			closeBoth()
			return
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				closeBoth()
				return
			}
		}
		if err != nil {
			closeBoth()
			return
		}
	}
}
