package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of a service that a test can cut and
// restore, to simulate a network partition: while cut, every connection
// is closed at once and new ones are refused; while blackholed, every
// byte is dropped and connections hang (calls time out instead of
// failing at once). The service itself keeps its data.
type Proxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	cut    bool
	hole   bool
	conns  map[net.Conn]struct{}
}

// StartProxy listens on a free port of 127.0.0.1 and forwards to target;
// it is closed when the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := NewProxy(target)
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// NewProxy is StartProxy for programs (the fault drill): the caller
// closes it.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() { _ = p.ln.Close(); p.Cut() }

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		if p.hole {
			// Held open, its bytes dropped, until Restore closes it.
			p.conns[c] = struct{}{}
			p.mu.Unlock()
			go p.pipe(io.Discard, c)
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst until either ends, dropping what it reads while
// the proxy is blackholed, then closes both.
func (p *Proxy) pipe(dst io.Writer, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.holed() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	if c, ok := dst.(net.Conn); ok {
		_ = c.Close()
		delete(p.conns, c)
	}
	_ = src.Close()
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *Proxy) holed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hole
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

// Blackhole drops every byte in both directions from now on, keeps the
// connections open and accepts new ones without forwarding them, until
// Restore: a partition that loses packets instead of refusing them.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = true
}

// Restore forwards new connections again. After Blackhole it closes every
// connection first: their streams lost bytes, and the clients reconnect.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole {
		for c := range p.conns {
			_ = c.Close()
		}
		p.conns = map[net.Conn]struct{}{}
	}
	p.cut, p.hole = false, false
}
