package stream

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/shop/bff/internal/postgres"
)

// FuzzParseStream checks the stream query parameter of GET /events:
// accepted values are exactly "orders" (all orders) and "order:<id>" with a
// non-empty id, which comes back unchanged.
func FuzzParseStream(f *testing.F) {
	for _, s := range []string{"orders", "order:6f1c1a52-0000-4000-8000-000000000001", "order:", "order", "orders:x", "ORDERS", "order:a:b", " orders", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := parseStream(v)
		switch {
		case !ok:
			if id != "" {
				t.Fatalf("refused %q with id %q", v, id)
			}
			if v == "orders" || (strings.HasPrefix(v, "order:") && len(v) > len("order:")) {
				t.Fatalf("refused the valid %q", v)
			}
		case id == "":
			if v != "orders" {
				t.Fatalf("%q read as all orders", v)
			}
		default:
			if v != "order:"+id {
				t.Fatalf("%q read as order %q", v, id)
			}
		}
	})
}

// FuzzResumePoint feeds arbitrary Last-Event-ID / lastEventId values to the
// resume check of both doors, against a seeded Postgres: it never fails
// with a database error; a resume point is taken only when it is the
// canonical decimal of a position this server issued (not above the
// stream head), and anything else is a reset ("unknown" or "expired"),
// never an error.
func FuzzResumePoint(f *testing.F) {
	for _, s := range []string{"0", "1", "42", "-1", "+1", "01", "1e3", " 1", "9223372036854775807", "9223372036854775808", "0x10", "", "abc", "1.0"} {
		f.Add(s)
	}
	e := newEnv(f)
	b, err := New(e.store, e.rdb, Config{Channel: e.channel, Logger: testLogger})
	if err != nil {
		f.Fatal(err)
	}
	head, err := b.dbHead(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	sc := postgres.ScopeFor(e.alice)
	f.Fuzz(func(t *testing.T, id string) {
		if id == "" {
			return // no resume point: the doors do not call the check
		}
		pos, reason, err := b.checkResume(context.Background(), sc, "", id)
		if err != nil {
			t.Fatalf("resume point %q: %v", id, err)
		}
		switch reason {
		case "":
			if strconv.FormatInt(pos, 10) != id || pos < 0 || pos > head {
				t.Fatalf("resume point %q taken as position %d (head %d)", id, pos, head)
			}
		case resetUnknown, resetExpired:
			if pos != 0 {
				t.Fatalf("reset %s with position %d", reason, pos)
			}
			n, perr := strconv.ParseInt(id, 10, 64)
			if reason == resetExpired && (perr != nil || strconv.FormatInt(n, 10) != id || n > head) {
				t.Fatalf("%q is no issued id, yet reset as expired", id)
			}
		default:
			t.Fatalf("resume point %q: reason %q", id, reason)
		}
	})
}
