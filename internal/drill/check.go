package drill

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Counts are the violations found in a history, and how much it held.
type Counts struct {
	// Stale: reads that showed an order older than a version a write's
	// response (received before the read was sent) or an event (received
	// before the read was sent) had already shown. StaleSame, StaleOther
	// and StaleEvent split it by what made the read stale: a write answered
	// by the reading instance, by the other one, or an event.
	Stale, StaleSame, StaleOther, StaleEvent int
	// Lost: events of a subscriber's customer it never received.
	Lost int
	// Multi: idempotency keys with more than one effect (different
	// successful answers, or more than one order placed), and keys
	// answered CONFLICT although the version they conflicted with was
	// committed by the key itself (a retry must replay that answer).
	Multi int
	// Version: orderScreen timelines whose versions are not 1..n (n the
	// order's version; a suffix k..n for orders older than the replay
	// window, whose first events are pruned), stale-expectedVersion
	// writes that succeeded, and CONFLICT answers that no other committed
	// write explains (see conflictWrong).
	Version int
	// Dup: events a subscriber received twice.
	Dup int
	// Order: events received after an event with a higher position.
	Order int
	// Gap: an order's events on a stream skipping a version (after the
	// stream's first event of the order), and resets.
	Gap int
	// Leak: an event or a screen showing another customer's order.
	Leak int
	// Internal: INTERNAL errors (or HTTP 500).
	Internal int

	// Writes, Reads and Events are the successful writes, reads and the
	// events received that were checked; Conflicts the CONFLICT answers
	// that were checked and found right.
	Writes, Reads, Events, Conflicts int

	// Details describe the violations, one line each.
	Details []string
}

func (c *Counts) detail(format string, args ...any) {
	c.Details = append(c.Details, fmt.Sprintf(format, args...))
}

// Violations is the sum of the violation counts.
func (c Counts) Violations() int {
	return c.Stale + c.Lost + c.Multi + c.Version + c.Dup + c.Order + c.Gap + c.Leak + c.Internal
}

// String is the drill's last line.
func (c Counts) String() string {
	return fmt.Sprintf("stale=%d lost=%d multi=%d version=%d dup=%d order=%d gap=%d leak=%d internal=%d",
		c.Stale, c.Lost, c.Multi, c.Version, c.Dup, c.Order, c.Gap, c.Leak, c.Internal)
}

// seen is one time an order was known at a version, from a write's
// response or an event.
type seen struct {
	at       time.Time
	version  int
	instance int // -1 for an event
}

// known answers "which version of an order was known before time t".
type known struct {
	list []seen
	best []int // best[i]: index of the highest version in list[:i+1]
}

func newKnown(list []seen) *known {
	sort.Slice(list, func(i, j int) bool { return list[i].at.Before(list[j].at) })
	k := &known{list: list, best: make([]int, len(list))}
	for i := range list {
		k.best[i] = i
		if i > 0 && list[k.best[i-1]].version >= list[i].version {
			k.best[i] = k.best[i-1]
		}
	}
	return k
}

// before returns the highest version known strictly before t.
func (k *known) before(t time.Time) (seen, bool) {
	if k == nil {
		return seen{}, false
	}
	n := sort.Search(len(k.list), func(i int) bool { return !k.list[i].at.Before(t) })
	if n == 0 {
		return seen{}, false
	}
	return k.list[k.best[n-1]], true
}

// newerOn reports whether a version above v was known before t from a
// write answered by instance.
func (k *known) newerOn(t time.Time, v, instance int) bool {
	for _, s := range k.list {
		if !s.at.Before(t) {
			break
		}
		if s.version > v && s.instance == instance {
			return true
		}
	}
	return false
}

// Check counts the violations of h, with truth the database's state at the
// end of the run.
func Check(h *History, truth Truth) Counts {
	var c Counts
	writes := map[string][]seen{}
	events := map[string][]seen{}
	type keyID struct{ actor, key string }
	answers := map[keyID]map[OrderState]bool{}
	for _, w := range h.Writes {
		if w.Code == "INTERNAL" {
			c.Internal++
			c.detail("internal: %s %s on instance %d", w.Op, w.Key, w.Instance)
		}
		if w.Code == "CONFLICT" && w.OrderID != "" {
			switch own, why := conflictWrong(w, truth); {
			case why == "":
				c.Conflicts++
			case own:
				c.Multi++
				c.detail("multi: %s %s of %s answered CONFLICT at expectedVersion %d of order %s: %s", w.Op, w.Key, w.Actor, w.ExpectedVersion, w.OrderID, why)
			default:
				c.Version++
				c.detail("version: %s %s of %s answered CONFLICT at expectedVersion %d of order %s: %s", w.Op, w.Key, w.Actor, w.ExpectedVersion, w.OrderID, why)
			}
		}
		if w.Code != "" || w.Result == nil {
			continue
		}
		c.Writes++
		if w.StaleVersion {
			c.Version++
			c.detail("version: %s %s with a stale expectedVersion succeeded: %+v", w.Op, w.Key, *w.Result)
		}
		writes[w.Result.ID] = append(writes[w.Result.ID], seen{at: w.End, version: w.Result.Version, instance: w.Instance})
		k := keyID{w.Actor, w.Key}
		if answers[k] == nil {
			answers[k] = map[OrderState]bool{}
		}
		answers[k][*w.Result] = true
	}
	for k, a := range answers {
		if len(a) > 1 {
			c.Multi++
			c.detail("multi: key %s of %s answered %v", k.key, k.actor, a)
		}
	}
	for k, n := range truth.PlacedByKey {
		if n > 1 {
			c.Multi++
			c.detail("multi: %d orders placed with key %s", n, k)
		}
	}

	for si, s := range h.Subscribers {
		got := map[int64]bool{}
		var last int64
		lastVersion := map[string]int{}
		for _, e := range s.Events {
			if e.Reset {
				c.Gap++
				c.detail("gap: subscriber %d got a reset after position %d", si, last)
				continue
			}
			c.Events++
			if cust, ok := truth.OrderCustomer[e.OrderID]; !ok || cust != s.Customer {
				c.Leak++
				c.detail("leak: subscriber %d of %s got event %d of order %s", si, s.Customer, e.Position, e.OrderID)
			}
			events[e.OrderID] = append(events[e.OrderID], seen{at: e.At, version: e.Version, instance: -1})
			switch {
			case got[e.Position]:
				c.Dup++
				c.detail("dup: subscriber %d got event %d twice", si, e.Position)
				continue
			case e.Position < last:
				c.Order++
				c.detail("order: subscriber %d got event %d after %d", si, e.Position, last)
			}
			got[e.Position] = true
			last = max(last, e.Position)
			if lv, ok := lastVersion[e.OrderID]; ok && e.Version != lv+1 {
				c.Gap++
				c.detail("gap: subscriber %d got event %d of order %s at version %d after version %d", si, e.Position, e.OrderID, e.Version, lastVersion[e.OrderID])
			}
			lastVersion[e.OrderID] = max(lastVersion[e.OrderID], e.Version)
		}
		for _, p := range truth.CustomerEvents[s.Customer] {
			if p > s.From && !got[p] {
				c.Lost++
				c.detail("lost: subscriber %d never got event %d (%s)", si, p, around(s.Events, p))
			}
		}
	}

	placed := map[string]bool{}
	for _, w := range h.Writes {
		if w.Op == "placeOrder" && w.Result != nil {
			placed[w.Result.ID] = true
		}
	}
	byWrite := map[string]*known{}
	for id, l := range writes {
		byWrite[id] = newKnown(l)
	}
	byEvent := map[string]*known{}
	for id, l := range events {
		byEvent[id] = newKnown(l)
	}
	for _, r := range h.Reads {
		if r.Code == "INTERNAL" {
			c.Internal++
			c.detail("internal: %s on instance %d", r.Screen, r.Instance)
		}
		if r.Code != "" {
			continue
		}
		c.Reads++
		leaked, stale := false, ""
		for _, o := range r.Orders {
			if r.Viewer != "" && truth.OrderCustomer[o.ID] != r.Viewer {
				leaked = true
			}
			if stale != "" {
				continue
			}
			if w, ok := byWrite[o.ID].before(r.Start); ok && w.version > o.Version {
				stale = "other"
				if byWrite[o.ID].newerOn(r.Start, o.Version, r.Instance) {
					stale = "same"
				}
			} else if e, ok := byEvent[o.ID].before(r.Start); ok && e.version > o.Version {
				stale = "event"
			}
		}
		if leaked {
			c.Leak++
			c.detail("leak: %s of %s on instance %d showed another customer's order: %v", r.Screen, r.Viewer, r.Instance, r.Orders)
		}
		if stale != "" {
			c.detail("stale (%s): %s of %s on instance %d sent at %s showed %v", stale, r.Screen, r.Viewer, r.Instance, r.Start.Format("15:04:05.000"), r.Orders)
		}
		switch stale {
		case "same":
			c.Stale++
			c.StaleSame++
		case "other":
			c.Stale++
			c.StaleOther++
		case "event":
			c.Stale++
			c.StaleEvent++
		}
		if r.Timeline != nil && !timelineOK(r, placed) {
			c.Version++
			c.detail("version: orderScreen of %v has timeline %v", r.Orders, r.Timeline)
		}
	}
	return c
}

// conflictWrong says why a CONFLICT answer to w was wrong ("" when it was
// right), and whether the fault is the key's own commit not replayed.
//
// A CONFLICT is right when the order had left the expected version e
// before the answer: version e+1 was committed, its event written before
// the answer arrived, by a write that is not this request. That write may
// be another client's, a payment result, or this client's own earlier
// attempt at the same change sent under another key or none (a retry under
// a new key conflicts with its own first attempt, rightly). It is wrong
// when e+1 was never committed, or only after the answer, or when it was
// committed by this very key: a retry with the key of a committed request
// must get that request's answer replayed, never a CONFLICT.
func conflictWrong(w Write, truth Truth) (own bool, why string) {
	e := w.ExpectedVersion
	m, ok := truth.Commits[w.OrderID][e+1]
	switch {
	case !ok:
		return false, fmt.Sprintf("version %d was never committed", e+1)
	case w.Key != "" && m.Key == w.Key && m.Actor == w.Actor:
		return true, fmt.Sprintf("version %d was committed by this key at %s: a retry must replay its answer", e+1, m.At.Format("15:04:05.000"))
	case !m.At.Before(w.End):
		return false, fmt.Sprintf("version %d was committed at %s, after the answer at %s", e+1, m.At.Format("15:04:05.000"), w.End.Format("15:04:05.000"))
	}
	return false, ""
}

// around describes the events a subscriber received next to position p.
func around(evs []Event, p int64) string {
	var before, after *Event
	for i := range evs {
		e := &evs[i]
		if e.Reset {
			continue
		}
		if e.Position < p && (before == nil || e.Position > before.Position) {
			before = e
		}
		if e.Position > p && (after == nil || e.Position < after.Position) {
			after = e
		}
	}
	d := func(e *Event) string {
		if e == nil {
			return "none"
		}
		return fmt.Sprintf("%d on connection %d to instance %d at %s", e.Position, e.Conn, e.Instance, e.At.Format("15:04:05.000"))
	}
	return "received before it: " + d(before) + "; after it: " + d(after)
}

// timelineOK reports whether an orderScreen's timeline is versions 1..n,
// n the order's version. Events older than the replay window are pruned,
// so the timeline of an order the drill did not place (the seeded ones,
// back-dated) may be a suffix k..n, or empty.
func timelineOK(r Read, placed map[string]bool) bool {
	if len(r.Orders) != 1 {
		return false
	}
	n := r.Orders[0].Version
	if len(r.Timeline) == 0 {
		return !placed[r.Orders[0].ID] && n > 0
	}
	first := r.Timeline[0]
	if placed[r.Orders[0].ID] && first != 1 {
		return false
	}
	want := make([]int, 0, n)
	for v := first; v <= n; v++ {
		want = append(want, v)
	}
	return slices.Equal(r.Timeline, want)
}
