package loadtest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// chunked encodes pieces as HTTP/1.1 chunks, with the last chunk.
func chunked(pieces ...string) []byte {
	var b bytes.Buffer
	for _, p := range pieces {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

func TestSSEDecoderSplitsAnywhere(t *testing.T) {
	body := chunked("retry: 3000\n\n", "id: 7\nevent: order.updated\ndata: {\"a\":1}\n\n: ping\n\nid: 8\ndata: x", "yz\r\n\r\n")
	want := []string{"retry: 3000", "", "id: 7", "event: order.updated", `data: {"a":1}`, "", ": ping", "", "id: 8", "data: xyz", ""}
	for size := 1; size <= len(body); size++ {
		var d sseDecoder
		var got []string
		for p := body; len(p) > 0; p = p[min(size, len(p)):] {
			if err := d.feed(p[:min(size, len(p))], func(l []byte) { got = append(got, string(l)) }); err != nil {
				t.Fatalf("pieces of %d: %v", size, err)
			}
		}
		if !slices.Equal(got, want) || !d.ended {
			t.Fatalf("pieces of %d: lines %q (ended %v), want %q", size, got, d.ended, want)
		}
	}
}

func TestSSEDecoderRejectsBadChunks(t *testing.T) {
	for _, body := range []string{"zz\r\nabc\r\n", "3\r\nabcX\r\n"} {
		var d sseDecoder
		if err := d.feed([]byte(body), func([]byte) {}); err == nil {
			t.Errorf("%q: no error", body)
		}
	}
}
