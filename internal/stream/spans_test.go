package stream

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestDeliverySpansFollowTheSampler: every stream that receives an event
// gets a delivery span when the sampler records it, and none when it does
// not (the deliveries after the first unrecorded one make no span at all).
func TestDeliverySpansFollowTheSampler(t *testing.T) {
	t.Parallel()
	const sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampled := strings.TrimSuffix(sampled, "01") + "00"
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler
		parent  string
		want    int
	}{
		{"sampled parent", sdktrace.ParentBased(sdktrace.NeverSample()), sampled, 3},
		{"parent not sampled", sdktrace.ParentBased(sdktrace.AlwaysSample()), unsampled, 0},
		{"always on under a parent not sampled", sdktrace.AlwaysSample(), unsampled, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tc.sampler), sdktrace.WithSpanProcessor(rec))
			b := e.instance(Config{Tracer: tp.Tracer("test")}, nil)
			srv := e.serve(b)
			o, _ := e.placeOrder(e.alice)
			e.settle()
			clients := []*client{connect(t, srv, "staff", "stream=orders", ""), connect(t, srv, "staff", "stream=orders", ""),
				connect(t, srv, "alice", "stream=order:"+o.ID, "")}
			evs := e.change(e.alice, o.ID)
			for i := range evs {
				evs[i].TraceParent = tc.parent
			}
			e.publish(b, evs)
			for _, c := range clients {
				c.expect(evs...)
			}
			// A second event, delivered after the first one's spans ended.
			next := e.publish(b, e.change(e.alice, o.ID))
			for _, c := range clients {
				c.expect(next...)
			}
			deliveries := func() int {
				n := 0
				for _, s := range rec.Ended() {
					if strings.HasPrefix(s.Name(), "sse.deliver ") {
						n++
						if s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
							t.Errorf("delivery span in trace %s", s.Parent().TraceID())
						}
					}
				}
				return n
			}
			eventually(t, "delivery spans ended", func() bool { return deliveries() >= tc.want })
			if n := deliveries(); n != tc.want {
				t.Errorf("%d delivery spans, want %d", n, tc.want)
			}
		})
	}
}
