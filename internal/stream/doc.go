// Package stream is the live order-event broker of the BFF and its SSE door
// GET /events (spec/streaming.md). The GraphQL subscription door uses the
// same broker through [Broker.Subscribe].
//
// # The record and the fan-out
//
// Postgres is the record: every order event is written in the transaction
// of the state change it describes, with a global position drawn from a
// sequence by the event insert at the very end of the transaction. No
// lock is held across transactions, so writers commit side by side; the
// insert first locks the customer's row (its per-customer sequence
// number), so the positions of one customer follow the order in which
// its transactions committed. Event ids on the wire are these positions.
//
// A sequence alone is not commit-ordered across customers: a transaction
// that drew position p may commit after one that drew p+1, and one that
// drew p may roll back and leave a hole. Readers therefore hand out a
// position only once every lower one is final. The sequencer learns the
// horizon of final positions from Postgres: it reads the last issued
// position, then takes a transaction id of its own (every writer took its
// id before it drew, so every position up to the one read was drawn below
// that id); once the database's oldest running transaction id has
// reached that id, every position up to the one read is committed or
// stays empty forever.
//
// Redis pub/sub is only the fast path of the fan-out. The committing
// instance calls [Broker.Publish] after commit and after the screens the
// events change were invalidated: the events are handed to the local
// subscribers at once, and a background publisher publishes them on the
// Redis channel for the other instances and marks them published
// (order_events.published_at), so the mutation never waits for Redis.
//
// # The sequencer
//
// Each broker runs one sequencer goroutine ([Broker.Run]) that hands events
// to the local subscribers strictly in position order, each position once.
// It keeps the broker's head, the last position handed out (every
// position up to it is final). An event whose position is not head+1 (a
// lower one is still committing, a Redis message was lost, Redis
// restarted, a publisher crashed, or another instance is slow) waits; if
// the gap is still there a moment later the sequencer reads it from
// Postgres, and steps over a missing position only once the horizon says
// it is final. The sequencer also fills from Postgres after every
// (re)subscription to Redis and, every RelayInterval, up to what was
// issued one interval earlier, so an event reaches every instance even
// while Redis is down. It records the last event it handed out in
// stream_head (the resume point of a staff screen).
//
// Cache rule 4 (event-then-refetch) holds for every path: an event is
// handed to clients only after Config.BeforePublish ran for it. Events
// from Publish and from Redis were invalidated by their publisher; events
// the sequencer reads from Postgres that nobody has marked published yet,
// and that did not already arrive from their publisher, get BeforePublish
// from the sequencer itself before they are handed out (invalidation is
// idempotent: a second call is harmless, but makes the screens loaded
// since the first miss once more).
//
// # The relay
//
// The outbox relay sweeps, every RelayInterval, events that are still not
// published a moment after they were written (a crash between commit and
// Publish): it calls BeforePublish, hands them to the local subscribers,
// publishes them on Redis and marks them published. Rows are claimed with
// FOR UPDATE SKIP LOCKED, so several instances can sweep at once without
// handling the same event twice in one sweep.
//
// # Streams
//
// A stream (one SSE connection or one GraphQL subscription) registers with
// the broker under the broker's lock and learns the head h at that moment:
// from then on it receives every live event after h. It then replays from
// Postgres the events of its scope in (resume point, h], so replay and live
// neither overlap nor leave a gap, and finally delivers live events,
// skipping any position it already delivered. A resume point is valid when
// it is a position the database issued whose event is still inside the
// replay window; otherwise the stream starts with `event: reset` and goes
// live from h.
//
// Every stream has a bounded buffer (Config.Buffer). When it is full the
// broker drops the stream instead of waiting (the client resumes with
// Last-Event-ID), and unblocks a pending write by moving its deadline to
// now; nobody else waits for it. A stream that overflows while it is
// still replaying is not dropped: it replays again from Postgres up to the
// new head.
//
// # Connections
//
// The SSE door owns its connection loop. It keeps github.com/r3labs/sse/v2's
// event model ([sse.Event]) and its text/event-stream encoding, but not its
// Server: r3labs' ServeHTTP spends three goroutines and about 28 KiB per
// idle connection, blocks a whole stream on one full subscriber and keeps
// an unbounded in-memory replay log (AutoReplay); replay here always comes
// from Postgres.
//
// Everything that can fail a request (authentication, the stream value,
// the order's visibility, the resume point, Postgres) is decided through
// the ResponseWriter, before any byte of the stream. Then, on HTTP/1.x,
// the handler hijacks the connection (http.ResponseController.Hijack),
// writes the response head itself and hands the connection to one
// goroutine that writes each batch of pre-encoded frames as one HTTP/1.1
// chunk, with a write deadline per batch (Config.WriteTimeout) set on the
// connection; the handler returns, so net/http's goroutines, buffers and
// request are freed and a server ReadTimeout or WriteTimeout no longer
// applies. What stays per idle connection is that goroutine's small stack,
// the socket, a channel of pointers to shared frames and a timer: about
// 5.5 KiB (BenchmarkIdleStreamMemory). Nobody reads a hijacked connection,
// so a client that went away is noticed by the heartbeat: a failed write,
// or a read probe that sees the close.
//
// On HTTP/2 (connections cannot be hijacked) and with writers that cannot
// be hijacked, the stream is written through the ResponseWriter on the
// handler's goroutine, with per-write deadlines through
// http.ResponseController and the read deadline cleared, so server
// timeouts do not end it either.
package stream
