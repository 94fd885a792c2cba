package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvent is one message read from an event stream.
type sseEvent struct {
	id, event, data string
}

// readEvents reads messages from an SSE body into a channel until it ends.
func readEvents(body interface{ Read([]byte) (int, error) }) <-chan sseEvent {
	out := make(chan sseEvent, 64)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.data != "" || cur.event != "" {
					out <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id:"):
				cur.id = strings.TrimSpace(line[3:])
			case strings.HasPrefix(line, "event:"):
				cur.event = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				cur.data += strings.TrimSpace(line[5:])
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan sseEvent, skipNext bool) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if skipNext && ev.event == "next" && ev.data == "" {
				continue
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10 s")
		}
	}
}

func TestEventsOfAMutationReachBothDoorsOnTheOtherInstance(t *testing.T) {
	e := newEnv(t)
	a, b := e.start(nil, Options{}), e.start(nil, Options{})
	tok := a.token("alice@example.com")
	id, version := pendingOrder(t, a, tok)
	screen := b.post(tok, orderScreenQuery, map[string]any{"id": id})
	last := field(screen.Data, "orderScreen", "lastEventId").(string)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// the browser door on B, resuming from the screen read
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/events?stream=order:"+id+"&lastEventId="+last, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %v %v", err, resp)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", resp.Header)
	}
	sse := readEvents(resp.Body)

	// the GraphQL door on B (graphql-sse, distinct connections)
	body, _ := json.Marshal(map[string]any{"query": `subscription($id: ID) { orderEvents(orderId: $id) { id type version toStatus } }`,
		"variables": map[string]any{"id": id}})
	sreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/graphql", bytes.NewReader(body))
	sreq.Header.Set("Authorization", "Bearer "+tok)
	sreq.Header.Set("Content-Type", "application/json")
	sreq.Header.Set("Accept", "text/event-stream")
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil || sresp.StatusCode != http.StatusOK {
		t.Fatalf("subscription: %v %v", err, sresp)
	}
	defer sresp.Body.Close()
	gql := readEvents(sresp.Body)
	// the writes come after both doors registered with B's broker
	waitFor(t, "both streams registered on B", func() bool { return b.srv.broker.OpenStreams() == 2 })

	for i := 0; i < 3; i++ {
		m := a.post(tok, updateAddress, map[string]any{"id": id, "v": version + i, "city": "Live"})
		if len(m.Errors) > 0 {
			t.Fatalf("mutation %d: %s", i, m.Raw)
		}
	}
	var prev string
	for i := 0; i < 3; i++ {
		ev := next(t, sse, false)
		var data map[string]any
		if err := json.Unmarshal([]byte(ev.data), &data); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.event != "order.address_updated" || int(data["version"].(float64)) != version+i+1 || data["id"] != ev.id {
			t.Fatalf("SSE event %d: %+v", i, ev)
		}
		if ev.id <= prev && len(ev.id) <= len(prev) {
			t.Fatalf("ids out of order: %s after %s", ev.id, prev)
		}
		prev = ev.id

		g := next(t, gql, true)
		var payload struct {
			Data struct {
				OrderEvents struct {
					ID      string `json:"id"`
					Version int    `json:"version"`
				} `json:"orderEvents"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(g.data), &payload); err != nil {
			t.Fatalf("subscription data %q: %v", g.data, err)
		}
		if payload.Data.OrderEvents.ID != ev.id || payload.Data.OrderEvents.Version != version+i+1 {
			t.Fatalf("subscription event %d: %s, SSE had id %s", i, g.data, ev.id)
		}
	}
	// the screen read after the event is fresh on either instance
	for _, in := range []*instance{a, b} {
		r := in.post(tok, orderScreenQuery, map[string]any{"id": id})
		if v := int(field(r.Data, "orderScreen", "order", "version").(float64)); v != version+3 {
			t.Fatalf("screen after the events: version %d", v)
		}
	}
}

func TestEventStreamAuthorization(t *testing.T) {
	e := newEnv(t)
	in := e.start(nil, Options{})
	id, _ := pendingOrder(t, in, in.token("alice@example.com"))
	for _, c := range []struct {
		who, stream string
		want        int
	}{
		{"", "orders", http.StatusUnauthorized},
		{"bob@example.com", "order:" + id, http.StatusNotFound},
		{"alice@example.com", "nonsense", http.StatusBadRequest},
		{"alice@example.com", "order:" + id, http.StatusOK},
		{"staff@example.com", "order:" + id, http.StatusOK},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/events?stream="+c.stream, nil)
		if c.who != "" {
			req.Header.Set("Authorization", "Bearer "+in.token(c.who))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode != c.want {
			t.Errorf("%q on %s: %d, want %d", c.who, c.stream, resp.StatusCode, c.want)
		}
	}
}
