package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// sseDecoder decodes the body of one chunked text/event-stream response
// as it arrives, in pieces of any size: it undoes the HTTP/1.1 chunking
// and hands every complete SSE line (without its line ending) to a
// callback. It holds no goroutine, so that a fan-out client can read a
// thousand streams from one event loop.
type sseDecoder struct {
	state  int    // one of the decode* states
	left   int64  // bytes left in the current chunk (decodeData)
	header []byte // the chunk-size line read so far
	line   []byte // the SSE line read so far
	ended  bool   // the last chunk (size 0) was read
}

const (
	decodeSize    = iota // reading a chunk-size line
	decodeData           // reading chunk data
	decodeDataEnd        // reading the CRLF after chunk data
)

// errBadChunk is a body that is not valid HTTP/1.1 chunked encoding.
var errBadChunk = errors.New("malformed chunked encoding")

// feed decodes p and calls line for every complete SSE line in it.
func (d *sseDecoder) feed(p []byte, line func([]byte)) error {
	for len(p) > 0 && !d.ended {
		switch d.state {
		case decodeSize:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				d.header = append(d.header, p...)
				if len(d.header) > 64 {
					return errBadChunk
				}
				return nil
			}
			d.header = append(d.header, p[:i]...)
			p = p[i+1:]
			h := bytes.TrimRight(d.header, "\r")
			if j := bytes.IndexByte(h, ';'); j >= 0 { // chunk extensions
				h = h[:j]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(h)), 16, 64)
			if err != nil || n < 0 {
				return errBadChunk
			}
			d.header = d.header[:0]
			if n == 0 {
				d.ended = true
				return nil
			}
			d.left, d.state = n, decodeData
		case decodeData:
			n := min(int64(len(p)), d.left)
			d.lines(p[:n], line)
			p = p[n:]
			if d.left -= n; d.left == 0 {
				d.state = decodeDataEnd
			}
		case decodeDataEnd:
			// CRLF (a bare LF is tolerated, as by net/http).
			switch p[0] {
			case '\r':
				p = p[1:]
			case '\n':
				p = p[1:]
				d.state = decodeSize
			default:
				return errBadChunk
			}
		}
	}
	return nil
}

// lines splits decoded body bytes into SSE lines (ended by LF, CRLF or
// CR-less LF; a CR before the LF is dropped).
func (d *sseDecoder) lines(p []byte, line func([]byte)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.line = append(d.line, p...)
			return
		}
		l := p[:i]
		if len(d.line) > 0 {
			d.line = append(d.line, l...)
			l = d.line
		}
		line(bytes.TrimSuffix(l, []byte("\r")))
		d.line = d.line[:0]
		p = p[i+1:]
	}
}

// dialFanStream connects to base, sends GET path with token, checks the
// response head (200, chunked) and reads until the first frame (the retry
// hint) is complete: the stream is registered with the broker then. The
// returned decoder holds what was read after it.
func dialFanStream(ctx context.Context, base, path, token string) (net.Conn, *sseDecoder, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, nil, err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *sseDecoder, error) {
		conn.Close()
		return nil, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", path, u.Host, token)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var head []byte
	buf := make([]byte, 4096)
	var rest []byte
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fail(fmt.Errorf("response head: %w", err))
		}
		head = append(head, buf[:n]...)
		if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
			rest, head = head[i+4:], head[:i]
			break
		}
		if len(head) > 64<<10 {
			return fail(errors.New("response head too long"))
		}
	}
	status, fields, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fail(fmt.Errorf("status %q", status))
	}
	chunked := false
	for f := range bytes.SplitSeq(fields, []byte("\r\n")) {
		k, v, _ := bytes.Cut(f, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) && bytes.EqualFold(bytes.TrimSpace(v), []byte("chunked")) {
			chunked = true
		}
	}
	if !chunked {
		return fail(errors.New("response is not chunked"))
	}
	dec := &sseDecoder{}
	first := false // the retry hint's blank line was read
	var after [][]byte
	onLine := func(l []byte) {
		if first {
			after = append(after, append([]byte(nil), l...))
		} else if len(l) == 0 {
			first = true
		}
	}
	for p := rest; ; {
		if err := dec.feed(p, onLine); err != nil {
			return fail(err)
		}
		if first || dec.ended {
			break
		}
		n, err := conn.Read(buf)
		if err != nil {
			return fail(fmt.Errorf("first frame: %w", err))
		}
		p = buf[:n]
	}
	if !first {
		return fail(errors.New("stream ended before its first frame"))
	}
	if len(after) > 0 {
		// Nothing follows the retry hint until an event commits.
		return fail(fmt.Errorf("unexpected bytes after the first frame: %q", after))
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, dec, nil
}
