package gqlhttp_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shop/bff/graph"
	"github.com/shop/bff/internal/gqlhttp"
)

// newAdmitter is a handler with the default limits on the served schema;
// only its admission runs (no resolvers, no database).
func newAdmitter() *gqlhttp.Handler {
	es := graph.Schema(&graph.Resolver{})
	return gqlhttp.New(gqlhttp.Config{Exec: graph.NewExecutor(es, graph.ExecConfig{QueryCache: gqlhttp.DocumentCache{}}),
		Schema: es.Schema()})
}

// dupTree nests fields two of a kind per level, depth levels deep: the
// shape that costs the overlapping-fields check most per selection.
func dupTree(depth int) string {
	if depth == 0 {
		return "id"
	}
	sub := dupTree(depth - 1)
	return "products { " + sub + " } products { " + sub + " }"
}

// worstDocuments are the most expensive documents the default limits let
// reach validation (32 KiB, 4,000 tokens, 400 selections, 2 fields per
// response key and 32 fragments per selection set, 64 fragments).
func worstDocuments() map[string]string {
	docs := map[string]string{}
	docs["duplicate tree (2 per key, 7 levels, 254 selections)"] = "{ " + dupTree(7) + " }"

	var b strings.Builder
	b.WriteString("{ products { edges { node { ")
	for i := 0; i < 32; i++ {
		fmt.Fprintf(&b, "...F%d ", i)
	}
	b.WriteString("} } } }\n")
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&b, "fragment F%d on Product { id name ", i)
		for j := i + 1; j < 64 && j < i+4; j++ {
			fmt.Fprintf(&b, "...F%d ", j)
		}
		b.WriteString("}\n")
	}
	docs["64 fragments, 32 spreads in one set, each spreading 3 more"] = b.String()

	b.Reset()
	b.WriteString("query Q(")
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&b, "$v%d: [[[[[[[[[[Int]]]]]]]]]] = [[[[[[[[[[1]]]]]]]]]] ", i)
	}
	b.WriteString(") { products(first: 1) { edges { node { id } } } }")
	docs["64 unused variables with nested list types and defaults"] = b.String()

	b.Reset()
	b.WriteString("{ products(first: 1, after: ")
	b.WriteString(strings.Repeat("[", 1900) + strings.Repeat("]", 1900))
	b.WriteString(") { edges { node { id } } } }")
	docs["list nested 1,900 deep in an argument"] = b.String()

	b.Reset()
	b.WriteString("{ products { edges { node { id ")
	for i := 0; i < 560; i++ {
		b.WriteString("@skip(if: false) ")
	}
	b.WriteString("} } } }")
	docs["560 directives on one field (3,920 tokens)"] = b.String()

	b.Reset()
	b.WriteString("{ ")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "p%d: products(first: 100) { edges { node { id name ", i)
		for j := 0; j < 14; j++ {
			fmt.Fprintf(&b, "f%d: name ", j)
		}
		b.WriteString("} } } ")
	}
	b.WriteString("}")
	docs["20 root fields × 19 selections (380)"] = b.String()
	return docs
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func admit(h *gqlhttp.Handler, body []byte) (ok bool, code int) {
	r := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	_, ok = h.Admit(w, r, gqlhttp.DoorHTTP)
	return ok, w.Code
}

// BenchmarkWorstAdmission measures the CPU of admitting (reading, parsing,
// counting, validating, measuring cost and depth) each of the most
// expensive documents the limits accept: the goal is under 5 ms each.
func BenchmarkWorstAdmission(b *testing.B) {
	h := newAdmitter()
	for name, doc := range worstDocuments() {
		body, _ := json.Marshal(map[string]any{"query": doc})
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				admit(h, body)
			}
			// CPU time of the process (GC included), steady on a busy machine
			// where wall time is not.
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestWorstDocumentsReachValidation checks that each worst document passes
// the limits checked before validation (so the benchmark measures
// validation work, not an early refusal).
func TestWorstDocumentsReachValidation(t *testing.T) {
	h := newAdmitter()
	for name, doc := range worstDocuments() {
		body, _ := json.Marshal(map[string]any{"query": doc})
		r := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.Admit(w, r, gqlhttp.DoorHTTP)
		if strings.Contains(w.Body.String(), `"tokens"`) || strings.Contains(w.Body.String(), `"selections"`) ||
			strings.Contains(w.Body.String(), `"sameKey"`) || strings.Contains(w.Body.String(), `"spreads"`) ||
			strings.Contains(w.Body.String(), `"fragments"`) || strings.Contains(w.Body.String(), `"variables"`) || w.Code == http.StatusRequestEntityTooLarge {
			t.Errorf("%s is refused before validation: %d %.300s", name, w.Code, w.Body.String())
		}
	}
}
