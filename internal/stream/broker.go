package stream

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/telemetry"
)

// Config configures a [Broker]. Zero fields take their defaults.
type Config struct {
	// ReplayWindow is how long events can be replayed to a client that
	// resumes; an older resume point gets `event: reset`. Default
	// config.DefaultStreamReplayWindow.
	ReplayWindow time.Duration
	// PruneInterval is how often the broker deletes events older than
	// ReplayWindow (the oldest first, PruneBatch at a time, never past the
	// last position a broker handed out). Default
	// config.DefaultStreamPruneInterval.
	PruneInterval time.Duration
	// PruneBatch bounds one delete of the pruner. Default 1000.
	PruneBatch int
	// Heartbeat is the interval of the `: ping` comment on an otherwise
	// idle SSE connection. Default config.DefaultStreamHeartbeat.
	Heartbeat time.Duration
	// Retry is the reconnection delay sent as the first bytes of every SSE
	// stream (`retry: 3000`). Default config.DefaultStreamRetry.
	Retry time.Duration
	// Buffer is the number of events buffered per stream; a stream whose
	// buffer overflows is disconnected (it resumes with Last-Event-ID).
	// Default 64.
	Buffer int
	// SendBuffer is the kernel send buffer of a hijacked SSE connection
	// (SO_SNDBUF): with Buffer, it bounds what a client that stopped
	// reading holds before its stream overflows and is disconnected, and
	// the kernel memory of every stream. Default 32 KiB.
	SendBuffer int
	// Channel is the Redis pub/sub channel of the fan-out. Default
	// "bff:events".
	Channel string
	// RelayInterval is how often the outbox relay sweeps events that were
	// committed but not published, and how often the sequencer compares its
	// head with the database's. Unpublished events are swept once they are
	// older than twice this interval (at least one second). Default 500ms.
	RelayInterval time.Duration
	// BeforePublish invalidates the cached screens of events. The broker
	// calls it before it publishes an event that nobody marked published
	// (the relay, and the sequencer when it fills a gap from Postgres);
	// events given to Publish must already be invalidated. Optional.
	BeforePublish func(ctx context.Context, events []order.Event)
	// Observe, optional, is told of the events the broker hands out, in
	// position order (a position is handed out once every position before
	// it is final), each before it reaches a stream of this instance: the
	// screen cache's Observe, so that an instance that has seen an event
	// never serves a screen older than it, even when the writer could not
	// invalidate it. An event may be told more than once.
	Observe func(events []order.Event)
	// WriteTimeout bounds every write to an SSE connection (it is set as a
	// per-write deadline, so it replaces the server's WriteTimeout for
	// streams). Default 10s. (Not in the original API sketch; added so the
	// deadline is configurable.)
	WriteTimeout time.Duration
	// Logger receives the broker's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives delivery lags, replays and resets. Optional.
	Metrics Metrics
	// Tracer makes a span for each live delivery of an event to an SSE
	// stream, a child of the request that committed the event and linked
	// to the stream's own request. Default: no spans.
	Tracer trace.Tracer
	// Caps, optional, limits the streams of each user on GET /events
	// (share it with the other stream doors).
	Caps *Caps
}

func (c *Config) defaults() {
	if c.ReplayWindow <= 0 {
		c.ReplayWindow = config.DefaultStreamReplayWindow
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = config.DefaultStreamPruneInterval
	}
	if c.PruneBatch <= 0 {
		c.PruneBatch = 1000
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = config.DefaultStreamHeartbeat
	}
	if c.Retry <= 0 {
		c.Retry = config.DefaultStreamRetry
	}
	if c.Buffer <= 0 {
		c.Buffer = 64
	}
	if c.SendBuffer <= 0 {
		c.SendBuffer = 32 << 10
	}
	if c.Channel == "" {
		c.Channel = "bff:events"
	}
	if c.RelayInterval <= 0 {
		c.RelayInterval = 500 * time.Millisecond
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
}

// relayGrace is how old an unpublished event must be before the relay
// takes it over from its committing instance.
func (c *Config) relayGrace() time.Duration {
	return max(2*c.RelayInterval, time.Second)
}

// Broker is the event broker of one instance: it sequences the events of
// Postgres and Redis into one ordered feed and fans it out to the streams
// of this instance. Create it with [New] and run it with [Broker.Run].
type Broker struct {
	store *postgres.Store
	rdb   redis.UniversalClient
	cfg   Config
	log   *slog.Logger

	// in carries events to the sequencer (from Publish, the relay and
	// Redis; what is sent is the sequencer's to keep); poke asks it for a
	// catch-up from Postgres; outbox carries Publish's events to the
	// background publisher.
	in     chan []order.Event
	poke   chan struct{}
	outbox chan []order.Event

	initMu sync.Mutex // serializes the lazy initialization of head

	mu         sync.Mutex
	headKnown  bool
	head       int64 // last position handed to the streams (all up to it are final)
	lastEvent  int64 // position of the last event handed to the streams
	all        map[*sub]struct{}
	byCustomer map[string]map[*sub]struct{}
	byOrder    map[string]map[*sub]struct{}
	closing    bool

	// seq is the sequencer goroutine's own state (see sequencer.go).
	seq seqState

	// sequencerChecks counts the sequencer's reads of Postgres.
	sequencerChecks atomic.Int64

	openCount atomic.Int64
	streams   sync.WaitGroup
}

// New returns a broker over store (the record) and rdb (the fan-out). It
// does no I/O; start it with [Broker.Run].
func New(store *postgres.Store, rdb redis.UniversalClient, cfg Config) (*Broker, error) {
	if store == nil {
		return nil, errors.New("stream: nil store")
	}
	if rdb == nil {
		return nil, errors.New("stream: nil redis client")
	}
	cfg.defaults()
	return &Broker{
		store:      store,
		rdb:        rdb,
		cfg:        cfg,
		log:        cfg.Logger.With("component", "stream"),
		in:         make(chan []order.Event, 4096),
		poke:       make(chan struct{}, 1),
		outbox:     make(chan []order.Event, 1024),
		all:        map[*sub]struct{}{},
		byCustomer: map[string]map[*sub]struct{}{},
		byOrder:    map[string]map[*sub]struct{}{},
	}, nil
}

// OpenStreams is the number of open streams (SSE connections and GraphQL
// subscriptions) on this instance, for the metrics gauge. An SSE client
// that went away counts until its stream notices, at the latest at the
// next heartbeat.
func (b *Broker) OpenStreams() int { return int(b.openCount.Load()) }

// Run runs the sequencer, the Redis subscription, the publisher of
// [Broker.Publish], the outbox relay and the pruner until ctx ends, then closes the
// streams of this broker (their clients resume elsewhere). Redis and
// Postgres failures are logged and retried; Run survives Redis restarts.
// It returns nil when ctx ends.
func (b *Broker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); b.redisLoop(ctx) }()
	go func() { defer wg.Done(); b.pruneLoop(ctx) }()
	go func() { defer wg.Done(); b.relayLoop(ctx) }()
	go func() { defer wg.Done(); b.publisher(ctx) }()
	b.sequence(ctx)
	wg.Wait()
	b.dropAll()
	return nil
}

// Publish fans out events that were just committed on this instance and
// whose screens are already invalidated: it hands them to the local
// streams at once and queues them for the publisher, which publishes them
// on Redis for the other instances and marks them published. It does not
// wait for Redis or Postgres and never fails the caller: an event that
// could not be published on Redis still reaches every instance through
// Postgres (the sequencers' catch-up), and one that was not marked (queue
// full, crash) is taken over by the relay.
func (b *Broker) Publish(ctx context.Context, events []order.Event) {
	if len(events) == 0 {
		return
	}
	if tp := telemetry.TraceParent(ctx); tp != "" {
		events = slices.Clone(events)
		for i := range events {
			events[i].TraceParent = tp
		}
	}
	select {
	case b.in <- slices.Clone(events):
	default:
		// The sequencer is far behind; it reads these from Postgres soon.
		b.wakeSequencer()
	}
	select {
	case b.outbox <- slices.Clone(events):
	default:
		b.log.Warn("stream: publish queue full; the relay publishes these events", "first", events[0].Position)
	}
}

// publisher publishes the events queued by Publish on Redis, in order,
// several publications per message when they queue up, and marks them
// published.
func (b *Broker) publisher(ctx context.Context) {
	for {
		var evs []order.Event
		select {
		case <-ctx.Done():
			return
		case evs = <-b.outbox:
		}
		for more := true; more && len(evs) < relayBatch; {
			select {
			case e := <-b.outbox:
				evs = append(evs, e...)
			default:
				more = false
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := b.publishRedis(pctx, evs); err != nil {
			b.log.Warn("stream: redis publish failed; other instances catch up from postgres", "error", err)
		}
		// Marked either way: the screens are invalidated, and the events
		// reach every instance through Postgres when Redis does not bring
		// them.
		if err := b.markPublished(pctx, positions(evs)); err != nil {
			b.log.Warn("stream: marking events published failed; the relay takes them over", "error", err)
		}
		cancel()
	}
}

// Shutdown stops accepting streams, tells the connected SSE clients to
// reconnect (a last `retry:` hint, then the end of the response; they
// resume on another instance with Last-Event-ID), closes the GraphQL
// subscriptions, and waits until every stream has ended or ctx ends.
// Call it before http.Server.Shutdown, which waits for streams to end.
func (b *Broker) Shutdown(ctx context.Context) {
	b.dropAll()
	done := make(chan struct{})
	go func() { b.streams.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (b *Broker) wakeSequencer() {
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

func positions(events []order.Event) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.Position
	}
	return out
}

// ----------------------------------------------------------- subscribers

// dropReason says why the broker ended a stream.
type dropReason int

const (
	dropOverflow dropReason = iota + 1
	dropShutdown
)

// sub is one registered stream.
type sub struct {
	customerID string // "" for every customer (staff)
	orderID    string // "" for every order in scope
	// queue holds the events dispatched to the stream and not yet taken
	// (at most limit; nil while idle, so that an idle stream holds no
	// buffer); ready is signalled when it becomes non-empty, when the
	// broker drops the stream, and by the stream's own timer.
	qmu   sync.Mutex
	queue []*item
	limit int
	ready chan struct{}
	gone  chan struct{} // closed when the broker drops the stream
	why   dropReason    // set before gone is closed

	// replaying and lagged are guarded by Broker.mu: while the stream
	// replays, an overflow only marks it lagged (it replays again).
	replaying bool
	lagged    bool

	kickMu   sync.Mutex
	kick     func(time.Time) // moves the write deadline; nil for GraphQL
	finished bool
}

// unblock moves the deadline of the stream's writes to deadline (so a
// write blocked on a client that does not read fails by then), unless its
// handler has returned.
func (s *sub) unblock(deadline time.Time) {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	if s.kick != nil && !s.finished {
		s.kick(deadline)
	}
}

// setKick sets how the broker unblocks the stream's writes.
func (s *sub) setKick(kick func(time.Time)) {
	s.kickMu.Lock()
	s.kick = kick
	s.kickMu.Unlock()
}

func newSub(customerID, orderID string, limit int) *sub {
	return &sub{customerID: customerID, orderID: orderID, limit: limit,
		ready: make(chan struct{}, 1), gone: make(chan struct{})}
}

// offer queues items (in order) for the stream and signals ready once:
// a stream woken for several events takes them all in one write. It
// queues as many as fit and returns false when not all of them did (the
// queue is full).
func (s *sub) offer(items []*item) bool {
	s.qmu.Lock()
	n := min(len(items), s.limit-len(s.queue))
	if n > 0 {
		s.queue = append(s.queue, items[:n]...)
	}
	s.qmu.Unlock()
	if n > 0 {
		s.signal()
	}
	return n == len(items)
}

// signal wakes the stream's goroutine (once, however often it is called
// before the goroutine runs).
func (s *sub) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take returns the queued events (in order) and empties the queue.
func (s *sub) take() []*item {
	s.qmu.Lock()
	q := s.queue
	s.queue = nil
	s.qmu.Unlock()
	return q
}

// queued is the number of queued events.
func (s *sub) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.queue)
}

func (s *sub) finish() {
	s.kickMu.Lock()
	s.finished = true
	s.kickMu.Unlock()
}

// item is one event as handed to the live streams: shared by all of them,
// with its SSE frame encoded once and its trace context parsed once.
type item struct {
	ev    order.Event
	frame []byte
	// parent is the context of the request that committed the event (nil
	// without a trace context): the parent of its delivery spans.
	parent context.Context
	// unrecorded is set once a delivery span of the event was not
	// recorded: every sampler of telemetry.TracingConfig decides a child
	// of the same parent (same trace id, name and attributes) the same
	// way, so the other deliveries make no span either (a span that is
	// not recorded is never seen, only paid for, once per stream).
	unrecorded atomic.Bool
}

var errClosing = &order.Error{Code: order.CodeUnavailable, Message: "the server is shutting down, reconnect",
	Extensions: map[string]any{"retryAfterSeconds": 1}}

// register adds s to the broker and returns the head at that moment: s
// receives every event after it.
func (b *Broker) register(ctx context.Context, s *sub) (int64, error) {
	if err := b.ensureHead(ctx); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return 0, errClosing
	}
	switch {
	case s.orderID != "":
		addTo(b.byOrder, s.orderID, s)
	case s.customerID != "":
		addTo(b.byCustomer, s.customerID, s)
	default:
		b.all[s] = struct{}{}
	}
	s.replaying = true
	b.openCount.Add(1)
	b.streams.Add(1)
	return b.head, nil
}

// unregister removes s (if the broker has not dropped it already) and
// counts the stream as ended.
func (b *Broker) unregister(s *sub) {
	s.finish()
	b.mu.Lock()
	b.removeLocked(s)
	b.mu.Unlock()
	b.openCount.Add(-1)
	b.streams.Done()
}

func addTo(m map[string]map[*sub]struct{}, k string, s *sub) {
	set := m[k]
	if set == nil {
		set = map[*sub]struct{}{}
		m[k] = set
	}
	set[s] = struct{}{}
}

func removeFrom(m map[string]map[*sub]struct{}, k string, s *sub) bool {
	set := m[k]
	if _, ok := set[s]; !ok {
		return false
	}
	delete(set, s)
	if len(set) == 0 {
		delete(m, k) // streams with no subscribers are freed
	}
	return true
}

// removeLocked removes s from the indexes; false when it was not there.
func (b *Broker) removeLocked(s *sub) bool {
	switch {
	case s.orderID != "":
		return removeFrom(b.byOrder, s.orderID, s)
	case s.customerID != "":
		return removeFrom(b.byCustomer, s.customerID, s)
	default:
		if _, ok := b.all[s]; !ok {
			return false
		}
		delete(b.all, s)
		return true
	}
}

// dropLocked ends s for reason why; the caller unblocks it after unlocking.
func (b *Broker) dropLocked(s *sub, why dropReason) bool {
	if !b.removeLocked(s) {
		return false
	}
	s.why = why
	close(s.gone)
	s.signal() // the live loop of an SSE stream sleeps on ready alone
	return true
}

// dropAll stops accepting streams and ends every registered one.
func (b *Broker) dropAll() {
	var dropped []*sub
	b.mu.Lock()
	b.closing = true
	each := func(s *sub) {
		if b.dropLocked(s, dropShutdown) {
			dropped = append(dropped, s)
		}
	}
	for s := range b.all {
		each(s)
	}
	for _, set := range b.byCustomer {
		for s := range set {
			each(s)
		}
	}
	for _, set := range b.byOrder {
		for s := range set {
			each(s)
		}
	}
	b.mu.Unlock()
	// A stream blocked on a client that does not read gets a second to
	// finish its write; the others write their goodbye and end at once.
	for _, s := range dropped {
		s.unblock(time.Now().Add(time.Second))
	}
}

// endReplay is called by a stream that replayed up to its target. It
// returns the new target and false when the stream overflowed meanwhile
// (its buffer is emptied: everything up to the new target comes from
// Postgres again), or true when the stream is live from now on.
func (b *Broker) endReplay(s *sub) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !s.lagged {
		s.replaying = false
		return 0, true
	}
	s.lagged = false
	s.take() // senders hold b.mu
	return b.head, false
}

// dispatch hands events (in position order, all after head) to the
// matching streams and advances head. Each stream gets all its events of
// the call in one offer (one lock, one wake-up), so that it writes them
// in one chunk. It never waits for a stream.
func (b *Broker) dispatch(items []*item) {
	if len(items) == 0 {
		return
	}
	var dropped []*sub
	send := func(s *sub, its []*item) {
		if !s.offer(its) {
			if s.replaying {
				s.lagged = true
				return
			}
			if b.dropLocked(s, dropOverflow) {
				dropped = append(dropped, s)
			}
		}
	}
	if b.cfg.Observe != nil {
		evs := make([]order.Event, len(items))
		for i, it := range items {
			evs[i] = it.ev
		}
		b.cfg.Observe(evs)
	}
	b.mu.Lock()
	fresh := make([]*item, 0, len(items))
	for _, it := range items {
		if it.ev.Position <= b.head {
			continue
		}
		if len(b.all) > 0 || len(b.byCustomer[it.ev.CustomerID]) > 0 || len(b.byOrder[it.ev.OrderID]) > 0 {
			b.cfg.Metrics.FirstDelivery(lag(it.ev.At))
		}
		fresh = append(fresh, it)
		b.head = it.ev.Position
		b.lastEvent = it.ev.Position
	}
	if len(fresh) > 0 {
		for s := range b.all {
			send(s, fresh)
		}
		offerByKey(b.byCustomer, fresh, func(it *item) string { return it.ev.CustomerID }, send)
		offerByKey(b.byOrder, fresh, func(it *item) string { return it.ev.OrderID }, send)
	}
	b.mu.Unlock()
	for _, s := range dropped {
		b.log.Info("stream: slow client disconnected (buffer full)", "customer_id", s.customerID, "order_id", s.orderID)
		s.unblock(time.Now())
	}
}

// offerByKey sends the streams of each key of m the items with that key
// (in order), one send per stream.
func offerByKey(m map[string]map[*sub]struct{}, items []*item, key func(*item) string, send func(*sub, []*item)) {
	if len(m) == 0 {
		return
	}
	if len(items) == 1 {
		for s := range m[key(items[0])] {
			send(s, items)
		}
		return
	}
	done := map[string]bool{}
	for i, it := range items {
		k := key(it)
		if done[k] || len(m[k]) == 0 {
			continue
		}
		done[k] = true
		var its []*item
		for _, o := range items[i:] {
			if key(o) == k {
				its = append(its, o)
			}
		}
		for s := range m[k] {
			send(s, its)
		}
	}
}

func (b *Broker) currentHead() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.head, b.headKnown
}

// ensureHead initializes head on first use: the database's issued head
// when no transaction is running (then every position is final), else
// the stream head a broker recorded (final; the sequencer catches up from
// there). BeforePublish runs first for the events up to it that nobody
// marked published (they may be replayed to a stream right away).
func (b *Broker) ensureHead(ctx context.Context) error {
	if _, ok := b.currentHead(); ok {
		return nil
	}
	b.initMu.Lock()
	defer b.initMu.Unlock()
	if _, ok := b.currentHead(); ok {
		return nil
	}
	r, err := b.check(ctx, 0, 0, 0)
	if err != nil {
		return err
	}
	h := r.issued
	if r.xmin < r.xid {
		if h, err = b.storedHead(ctx); err != nil {
			return err
		}
	}
	unpublished, err := b.unpublishedUpTo(ctx, h)
	if err != nil {
		return err
	}
	b.beforePublish(ctx, unpublished)
	b.mu.Lock()
	b.head, b.headKnown = h, true
	b.mu.Unlock()
	return nil
}

func (b *Broker) beforePublish(ctx context.Context, events []order.Event) {
	if len(events) > 0 && b.cfg.BeforePublish != nil {
		b.cfg.BeforePublish(ctx, events)
	}
}
