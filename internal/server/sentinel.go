package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing/fstest"
	"time"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/persisted"
	"github.com/shop/bff/internal/telemetry"
)

// sentinel is the stale-read probe: at a low rate each instance writes a
// harmless marker (the shipping address line of a reserved internal order
// of a reserved internal customer) through the normal mutation path (its
// own HTTP handler: admission, idempotency keeper, commit, invalidation,
// publication) and reads the order's screen back through its normal cache
// path (response cache, screen cache). A read that shows an older version
// or another marker than the write's response is stale: the promise "no
// stale screen after a mutation's response" is broken, and
// bff_stale_sentinel_probes_total{result="stale"} counts it. Every
// instance probes, so every instance's cache path is checked, against
// writes that interleave with the other instances' probes on the same
// order.
type sentinel struct {
	s       *Server
	mu      sync.Mutex // one probe at a time
	token   string
	expires time.Time
	orderID string
	version int
}

const (
	sentinelWrite = `mutation StaleSentinelWrite($id: ID!, $v: Int!, $marker: String!) {
  updateShippingAddress(id: $id, expectedVersion: $v,
    address: {name: "Stale-read sentinel", line1: $marker, city: "Internal", postalCode: "00000", country: "DE"}) {
    order { version shippingAddress { line1 } } } }`
	sentinelRead  = `query StaleSentinelRead($id: ID!) { orderScreen(id: $id) { order { version shippingAddress { line1 } } } }`
	sentinelFind  = `query StaleSentinelFind { ordersScreen(first: 1) { orders { edges { node { id version } } } } }`
	sentinelPlace = `mutation StaleSentinelPlace($p: ID!) { placeOrder(input: {lines: [{productId: $p, quantity: 1}],
  shippingAddress: {name: "Stale-read sentinel", line1: "-", city: "Internal", postalCode: "00000", country: "DE"}}) {
  order { id version } } }`
	sentinelProduct = `query StaleSentinelProduct { products(first: 1) { edges { node { id } } } }`
)

// Probe runs one probe: it reports whether the read after the write was
// stale, and counts the result. An error (a dependency down, a conflict
// with another instance's probe twice in a row) is counted as "error" and
// says nothing about staleness.
func (p *sentinel) Probe(ctx context.Context) (stale bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	stale, err = p.probe(ctx)
	switch {
	case err != nil:
		p.s.metrics.ObserveSentinel(telemetry.SentinelError)
	case stale:
		p.s.metrics.ObserveSentinel(telemetry.SentinelStale)
	default:
		p.s.metrics.ObserveSentinel(telemetry.SentinelFresh)
	}
	return stale, err
}

func (p *sentinel) probe(ctx context.Context) (bool, error) {
	if err := p.setup(ctx); err != nil {
		return false, err
	}
	marker := "sentinel " + randomID()
	var written int
	for attempt := 0; ; attempt++ {
		r, err := p.do(ctx, sentinelWrite, map[string]any{"id": p.orderID, "v": p.version, "marker": marker}, true)
		if err != nil {
			return false, err
		}
		if e := r.firstError(); e != nil {
			// Another instance's probe wrote first: go again at its version.
			if cur, ok := e.Extensions["currentVersion"].(float64); ok && e.Extensions["code"] == "CONFLICT" && attempt == 0 {
				p.version = int(cur)
				continue
			}
			return false, fmt.Errorf("sentinel write: %s", e.Message)
		}
		var out struct {
			UpdateShippingAddress struct {
				Order struct{ Version int } `json:"order"`
			} `json:"updateShippingAddress"`
		}
		if err := json.Unmarshal(r.Data, &out); err != nil {
			return false, fmt.Errorf("sentinel write: %w", err)
		}
		written = out.UpdateShippingAddress.Order.Version
		p.version = written
		break
	}
	r, err := p.do(ctx, sentinelRead, map[string]any{"id": p.orderID}, false)
	if err != nil {
		return false, err
	}
	if e := r.firstError(); e != nil {
		return false, fmt.Errorf("sentinel read: %s", e.Message)
	}
	var out struct {
		OrderScreen struct {
			Order struct {
				Version         int
				ShippingAddress struct{ Line1 string } `json:"shippingAddress"`
			} `json:"order"`
		} `json:"orderScreen"`
	}
	if err := json.Unmarshal(r.Data, &out); err != nil {
		return false, fmt.Errorf("sentinel read: %w", err)
	}
	got := out.OrderScreen.Order
	stale := got.Version < written || (got.Version == written && got.ShippingAddress.Line1 != marker)
	if stale {
		p.s.log.ErrorContext(ctx, "stale-read sentinel: a screen read after a write showed older data",
			"order_id", p.orderID, "written_version", written, "read_version", got.Version)
	}
	p.version = max(p.version, got.Version)
	return stale, nil
}

// setup signs the sentinel in and finds (or places) its order.
func (p *sentinel) setup(ctx context.Context) error {
	if p.token == "" || time.Until(p.expires) < time.Minute {
		id, err := p.s.store.EnsureSentinelUser(ctx)
		if err != nil {
			return err
		}
		u, err := p.s.store.UserByID(ctx, id)
		if err != nil {
			return fmt.Errorf("sentinel user: %w", err)
		}
		iss, err := auth.NewIssuer(auth.Config{Secrets: bytesOf(p.s.cfg.JWTSecrets)})
		if err != nil {
			return err
		}
		if p.token, p.expires, err = iss.Issue(u); err != nil {
			return err
		}
	}
	if p.orderID != "" {
		return nil
	}
	r, err := p.do(ctx, sentinelFind, nil, false)
	if err != nil {
		return err
	}
	var found struct {
		OrdersScreen struct {
			Orders struct {
				Edges []struct {
					Node struct {
						ID      string
						Version int
					}
				}
			}
		} `json:"ordersScreen"`
	}
	if e := r.firstError(); e != nil {
		return fmt.Errorf("sentinel order: %s", e.Message)
	}
	if err := json.Unmarshal(r.Data, &found); err != nil {
		return err
	}
	if edges := found.OrdersScreen.Orders.Edges; len(edges) > 0 {
		p.orderID, p.version = edges[0].Node.ID, edges[0].Node.Version
		return nil
	}
	r, err = p.do(ctx, sentinelProduct, nil, false)
	if err != nil {
		return err
	}
	var products struct {
		Products struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	if err := json.Unmarshal(r.Data, &products); err != nil || len(products.Products.Edges) == 0 {
		return errors.New("sentinel order: no product to order")
	}
	r, err = p.do(ctx, sentinelPlace, map[string]any{"p": products.Products.Edges[0].Node.ID}, true)
	if err != nil {
		return err
	}
	if e := r.firstError(); e != nil {
		return fmt.Errorf("sentinel order: %s", e.Message)
	}
	var placed struct {
		PlaceOrder struct {
			Order struct {
				ID      string
				Version int
			}
		} `json:"placeOrder"`
	}
	if err := json.Unmarshal(r.Data, &placed); err != nil {
		return err
	}
	p.orderID, p.version = placed.PlaceOrder.Order.ID, placed.PlaceOrder.Order.Version
	return nil
}

// sentinelResponse is a GraphQL response of the sentinel's own requests.
type sentinelResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (r *sentinelResponse) firstError() *struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
} {
	if len(r.Errors) == 0 {
		return nil
	}
	return &r.Errors[0]
}

// do sends one GraphQL request through the server's own handler, the
// whole middleware chain included, as the sentinel customer.
func (p *sentinel) do(ctx context.Context, query string, vars map[string]any, keyed bool) (*sentinelResponse, error) {
	// By id: the sentinel's documents are a persisted-operation manifest
	// of their own (sentinelManifest), so they run where
	// PERSISTED_OPERATIONS=require allows only manifest operations.
	body, _ := json.Marshal(map[string]any{persisted.DocumentIDKey: persisted.ID(query), "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.RemoteAddr = "127.0.0.1:0"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("graphql-client-name", sentinelClient)
	req.Header.Set("graphql-client-version", sentinelClientVersion)
	if keyed {
		req.Header.Set("Idempotency-Key", "stale-sentinel-"+randomID())
	}
	rec := httptest.NewRecorder()
	p.s.handler.ServeHTTP(rec, req)
	var out sentinelResponse
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("sentinel request: HTTP %s: %.200s", strconv.Itoa(rec.Code), rec.Body.String())
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("sentinel request: %w", err)
	}
	return &out, nil
}

// The sentinel's client name and version, and its manifest of documents.
const (
	sentinelClient        = "bff-stale-sentinel"
	sentinelClientVersion = "1"
)

// sentinelManifest is the persisted-operation manifest of the sentinel's
// documents, loaded beside the web app's.
func sentinelManifest() fs.FS {
	docs := map[string]string{}
	for _, d := range []string{sentinelWrite, sentinelRead, sentinelFind, sentinelPlace, sentinelProduct} {
		docs[persisted.ID(d)] = d
	}
	raw, _ := json.Marshal(docs)
	return fstest.MapFS{sentinelClient + "/" + sentinelClientVersion + ".json": &fstest.MapFile{Data: raw}}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// runSentinel probes every interval until ctx ends.
func (s *Server) runSentinel(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func(ctx context.Context) {
		pctx, cancel := context.WithTimeout(ctx, max(s.cfg.RequestTimeout*2, 5*time.Second))
		defer cancel()
		if _, err := s.sentinel.Probe(pctx); err != nil && ctx.Err() == nil {
			s.log.Warn("stale-read sentinel: probe failed", "error", err)
		}
	})
}

// ProbeStaleness runs one probe of the stale-read sentinel now (the
// background probe runs every STALE_SENTINEL_INTERVAL): whether the read
// after its write was stale.
func (s *Server) ProbeStaleness(ctx context.Context) (bool, error) { return s.sentinel.Probe(ctx) }
