package server

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/shop/bff/internal/payments/paysim"
)

// otlpSpan is a span as an OTLP/HTTP receiver decoded it.
type otlpSpan struct {
	trace, id, parent string
	name              string
	kind              tracepb.Span_SpanKind
	attrs             map[string]string
	links             []string // span ids
	service           string
}

// otlpReceiver is a stand-in OpenTelemetry collector on loopback: it
// decodes the protobuf export requests of POST /v1/traces.
type otlpReceiver struct {
	t     *testing.T
	mu    sync.Mutex
	spans []otlpSpan
	srv   *httptest.Server
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP export: %s %s (%s)", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		var msg coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &msg)
		}
		if err != nil {
			t.Errorf("OTLP export: undecodable body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.add(&msg)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, anyValue(e))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

func (r *otlpReceiver) add(msg *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range msg.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = anyValue(kv.GetValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				o := otlpSpan{trace: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
					parent: hex.EncodeToString(s.GetParentSpanId()), name: s.GetName(), kind: s.GetKind(),
					attrs: map[string]string{}, service: service}
				for _, kv := range s.GetAttributes() {
					o.attrs[kv.GetKey()] = anyValue(kv.GetValue())
				}
				for _, l := range s.GetLinks() {
					o.links = append(o.links, hex.EncodeToString(l.GetSpanId()))
				}
				r.spans = append(r.spans, o)
			}
		}
	}
}

func (r *otlpReceiver) all() []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]otlpSpan(nil), r.spans...)
}

// spanTree indexes the spans of one export for assertions.
type spanTree struct {
	t    *testing.T
	byID map[string]otlpSpan
	all  []otlpSpan
}

func newSpanTree(t *testing.T, spans []otlpSpan) *spanTree {
	st := &spanTree{t: t, byID: map[string]otlpSpan{}, all: spans}
	for _, s := range spans {
		st.byID[s.id] = s
	}
	return st
}

// find returns the spans matching pred.
func (st *spanTree) find(pred func(otlpSpan) bool) []otlpSpan {
	var out []otlpSpan
	for _, s := range st.all {
		if pred(s) {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only span matching pred, failing otherwise.
func (st *spanTree) one(what string, pred func(otlpSpan) bool) otlpSpan {
	st.t.Helper()
	got := st.find(pred)
	if len(got) != 1 {
		var names []string
		for _, s := range got {
			names = append(names, s.name)
		}
		st.t.Fatalf("%s: want 1 span, got %d %v\n%s", what, len(got), names, st.dump(""))
	}
	return got[0]
}

// descends reports whether s is below ancestor (through parents).
func (st *spanTree) descends(s otlpSpan, ancestor string) bool {
	for p := s.parent; p != ""; {
		if p == ancestor {
			return true
		}
		ps, ok := st.byID[p]
		if !ok {
			return false
		}
		p = ps.parent
	}
	return false
}

// dump renders the trace of traceID ("" for all) as an indented tree.
func (st *spanTree) dump(traceID string) string {
	children := map[string][]otlpSpan{}
	var roots []otlpSpan
	for _, s := range st.all {
		if traceID != "" && s.trace != traceID {
			continue
		}
		if _, ok := st.byID[s.parent]; ok && s.parent != "" {
			children[s.parent] = append(children[s.parent], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s otlpSpan, depth int)
	walk = func(s otlpSpan, depth int) {
		keys := make([]string, 0, len(s.attrs))
		for k := range s.attrs {
			switch k {
			case "db.statement", "http.response.status_code", "graphql.operation.name", "bff.cache",
				"bff.idempotency", "http.route", "url.full", "db.operation.name", "bff.event.type":
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var attrs []string
		for _, k := range keys {
			v := s.attrs[k]
			if len(v) > 70 {
				v = v[:70] + "…"
			}
			attrs = append(attrs, k+"="+strings.Join(strings.Fields(v), " "))
		}
		if len(s.links) > 0 {
			attrs = append(attrs, "links="+strings.Join(s.links, ","))
		}
		fmt.Fprintf(&b, "%s%s [%s %s] %s\n", strings.Repeat("  ", depth), s.name, strings.TrimPrefix(s.kind.String(), "SPAN_KIND_"), s.id, strings.Join(attrs, " "))
		for _, c := range children[s.id] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

// TestTracesOfTheServedBinary starts the BFF as cmd/bff wires it, with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver on loopback and the
// payment simulator as provider, runs a screen miss, the same screen as a
// cache hit, a keyed payOrder that the simulator pays by webhook, and an
// SSE stream of that order, then decodes what was exported and checks the
// span tree.
func TestTracesOfTheServedBinary(t *testing.T) {
	recv := newOTLPReceiver(t)
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg := e.config()
	sim, err := paysim.New(paysim.Config{WebhookURL: base + "/webhooks/payments", Secret: []byte(cfg.WebhookSecrets[0]),
		DeliveryInitialBackoff: 100 * time.Millisecond, DeliveryMaxBackoff: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = sim.Shutdown(ctx)
		simSrv.Close()
	})
	cfg.PaymentsURL = simSrv.URL
	cfg.PaymentWorkers = 1
	cfg.OTLPEndpoint = recv.srv.URL

	logs := &logBuffer{}
	qc := &queryCounter{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PGTracer: qc, CachePrefix: e.prefix})
	if err != nil {
		cancel()
		t.Fatalf("server: %v", err)
	}
	in := &instance{t: t, srv: srv, URL: base, cfg: cfg, queries: qc, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(in.stop)

	tok := in.token("alice@example.com")
	const home = "query Home " + homeQuery
	if r := in.post(tok, home, nil, "X-Request-ID: trace-miss"); len(r.Errors) > 0 || !strings.Contains(r.Header.Get("Cache-Status"), "miss") {
		t.Fatalf("screen miss: %s %q", r.Raw, r.Header.Get("Cache-Status"))
	}
	if r := in.post(tok, home, nil, "X-Request-ID: trace-hit"); len(r.Errors) > 0 || !strings.Contains(r.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("screen hit: %s %q", r.Raw, r.Header.Get("Cache-Status"))
	}
	id, version := pendingOrder(t, in, tok)

	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/events?stream=order:"+id, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Request-ID", "trace-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %v %v", err, resp)
	}
	events := readEvents(resp.Body)

	const idemKey = "trace-pay-key-7f3a"
	pay := in.post(tok, `mutation Pay($id: ID!, $v: Int!) { payOrder(id: $id, expectedVersion: $v) { order { id status paymentStatus version } } }`,
		map[string]any{"id": id, "v": version}, "Idempotency-Key: "+idemKey, "X-Request-ID: trace-pay")
	if len(pay.Errors) > 0 {
		t.Fatalf("payOrder: %s", pay.Raw)
	}
	for seen := map[string]bool{}; !seen["payment.succeeded"]; {
		ev := next(t, events, false)
		seen[ev.event] = true
	}
	scancel()
	_ = resp.Body.Close()
	in.stop() // graceful: requests, streams and the worker finish, then the spans are flushed

	st := newSpanTree(t, recv.all())
	if len(st.all) == 0 {
		t.Fatal("nothing was exported")
	}
	server := func(requestID string) otlpSpan {
		return st.one("server span of "+requestID, func(s otlpSpan) bool {
			return s.kind == tracepb.Span_SPAN_KIND_SERVER && s.attrs["bff.request_id"] == requestID
		})
	}
	inTrace := func(root otlpSpan, pred func(otlpSpan) bool) []otlpSpan {
		return st.find(func(s otlpSpan) bool { return s.trace == root.trace && st.descends(s, root.id) && pred(s) })
	}
	isPG := func(s otlpSpan) bool { return s.attrs["db.system.name"] == "postgresql" }
	isRedis := func(s otlpSpan) bool { return s.attrs["db.system.name"] == "redis" }
	named := func(name string) func(otlpSpan) bool { return func(s otlpSpan) bool { return s.name == name } }

	// Every span is the BFF's, and no request of a probe is traced.
	for _, s := range st.all {
		if s.service != "bff" {
			t.Errorf("span %s of service %q", s.name, s.service)
		}
	}

	// The miss: server span → operation → resolver → Postgres and Redis.
	miss := server("trace-miss")
	if miss.name != "POST /graphql" || miss.attrs["http.response.status_code"] != "200" || miss.attrs["graphql.operation.name"] != "Home" {
		t.Errorf("miss server span: %s %v", miss.name, miss.attrs)
	}
	op := st.one("operation of the miss", func(s otlpSpan) bool { return s.parent == miss.id && s.name == "query Home" })
	resolver := st.one("resolver of the miss", func(s otlpSpan) bool { return s.parent == op.id && s.name == "Query.homeScreen" })
	if n := len(inTrace(resolver, isPG)); n == 0 {
		t.Errorf("no Postgres span under the resolver of the miss:\n%s", st.dump(miss.trace))
	}
	if n := len(inTrace(miss, isRedis)); n == 0 {
		t.Errorf("no Redis span in the miss:\n%s", st.dump(miss.trace))
	}

	// The hit: Redis only, no resolver, no SQL.
	hit := server("trace-hit")
	if hit.attrs["bff.cache"] == "" || !strings.Contains(hit.attrs["bff.cache"], "hit") {
		t.Errorf("hit server span: %v", hit.attrs)
	}
	if n := len(inTrace(hit, isRedis)); n == 0 {
		t.Errorf("no Redis span in the hit:\n%s", st.dump(hit.trace))
	}
	if got := inTrace(hit, func(s otlpSpan) bool { return isPG(s) || s.name == "Query.homeScreen" }); len(got) > 0 {
		t.Errorf("a cache hit ran resolvers or SQL:\n%s", st.dump(hit.trace))
	}

	// The keyed payOrder, from request to charge, webhook and deliveries.
	payReq := server("trace-pay")
	t.Logf("trace of the keyed payOrder:\n%s", st.dump(payReq.trace))
	if payReq.parent != "" || payReq.attrs["http.response.status_code"] != "200" || payReq.attrs["graphql.operation.name"] != "Pay" {
		t.Errorf("payOrder server span: parent %q %v", payReq.parent, payReq.attrs)
	}
	payOp := st.one("operation of payOrder", func(s otlpSpan) bool { return s.parent == payReq.id && s.name == "mutation Pay" })
	st.one("resolver of payOrder", func(s otlpSpan) bool { return s.parent == payOp.id && s.name == "Mutation.payOrder" })
	// The change's writes: a span of their own, or statements of a batch
	// (they ride with the commit's round trip).
	for _, want := range []struct{ span, sql string }{{"UPDATE orders", "UPDATE orders"}, {"INSERT charge_jobs", "INSERT INTO charge_jobs"}} {
		if len(inTrace(payReq, func(s otlpSpan) bool {
			return s.name == want.span || s.name == "BATCH" && strings.Contains(s.attrs["db.statement"], want.sql)
		})) == 0 {
			t.Errorf("no %q span in the payOrder request:\n%s", want.span, st.dump(payReq.trace))
		}
	}
	if len(inTrace(payReq, isRedis)) == 0 {
		t.Errorf("no Redis span (invalidation) in the payOrder request:\n%s", st.dump(payReq.trace))
	}
	job := st.one("charge job", func(s otlpSpan) bool { return s.name == "payments.charge" })
	if job.trace != payReq.trace || !st.descends(job, payReq.id) || job.attrs["bff.order_id"] != id {
		t.Errorf("charge job span not in the payOrder's trace: %+v", job)
	}
	call := st.one("provider call", func(s otlpSpan) bool {
		return s.parent == job.id && s.kind == tracepb.Span_SPAN_KIND_CLIENT && s.name == "POST"
	})
	if call.attrs["http.response.status_code"] != "201" || call.attrs["url.full"] != simSrv.URL+"/charges" {
		t.Errorf("provider call span: %v", call.attrs)
	}
	hook := st.one("webhook", func(s otlpSpan) bool { return s.name == "POST /webhooks/payments" })
	if hook.parent != call.id || hook.kind != tracepb.Span_SPAN_KIND_SERVER || hook.attrs["http.response.status_code"] != "200" {
		t.Errorf("webhook span is not the provider call's child: %+v", hook)
	}
	if len(inTrace(hook, named("UPDATE orders"))) == 0 {
		t.Errorf("the webhook's write has no span:\n%s", st.dump(payReq.trace))
	}

	// The webhook handler's own log line carries the trace id and the
	// request id of its request, like the access log line.
	var applied map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "payment webhook applied" {
			applied = m
		}
	}
	if applied == nil || applied["trace_id"] != hook.trace || applied["request_id"] != hook.attrs["bff.request_id"] {
		t.Errorf("webhook log line %v, want trace_id %s and request_id %s", applied, hook.trace, hook.attrs["bff.request_id"])
	}

	// SSE deliveries: children of the request that committed the event,
	// linked to the stream's request.
	stream := server("trace-stream")
	if stream.name != "GET /events" {
		t.Errorf("stream server span: %s", stream.name)
	}
	for ev, producer := range map[string]otlpSpan{"PAYMENT_REQUESTED": payReq, "PAYMENT_SUCCEEDED": hook} {
		d := st.one("delivery of "+ev, func(s otlpSpan) bool { return s.attrs["bff.event.type"] == ev })
		if d.trace != producer.trace || !st.descends(d, producer.id) {
			t.Errorf("delivery of %s is not under %s:\n%s", ev, producer.name, st.dump(payReq.trace))
		}
		if len(d.links) != 1 || d.links[0] != stream.id {
			t.Errorf("delivery of %s links %v, want the stream's span %s", ev, d.links, stream.id)
		}
	}

	// Statements without parameter values.
	var statements int
	for _, s := range st.find(isPG) {
		stmt := s.attrs["db.statement"]
		if s.name == "postgresql.connect" {
			continue
		}
		statements++
		if stmt == "" || stmt != s.attrs["db.query.text"] {
			t.Errorf("%s: db.statement %q", s.name, stmt)
		}
		for _, secret := range []string{id, idemKey, "alice@example.com"} {
			if strings.Contains(stmt, secret) {
				t.Errorf("%s: db.statement holds a parameter value %q: %s", s.name, secret, stmt)
			}
		}
	}
	if statements < 10 {
		t.Errorf("only %d Postgres spans", statements)
	}
}
