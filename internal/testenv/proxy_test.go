package testenv

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo serves a line echo on a free port until the test ends.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) error {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err == nil && line != "ping\n" {
		t.Fatalf("echo answered %q", line)
	}
	return err
}

// A blackholed proxy drops bytes and holds connections (reads time out
// rather than fail); Restore closes them and forwards new ones.
func TestProxyBlackholeAndRestore(t *testing.T) {
	p := StartProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := roundTrip(t, c, r); err != nil {
		t.Fatalf("before the blackhole: %v", err)
	}

	p.Blackhole()
	held, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("a blackholed proxy must accept connections: %v", err)
	}
	defer held.Close()
	for _, conn := range []net.Conn{c, held} {
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		err := roundTrip(t, conn, bufio.NewReader(conn))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("through the blackhole: want a timeout, got %v", err)
		}
	}

	p.Restore()
	_ = c.SetReadDeadline(time.Time{})
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a connection held through the blackhole must be closed by Restore")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(t, c2, bufio.NewReader(c2)); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}
