package gqlhttp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/99designs/gqlgen/graphql"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// The fast path answers a repeated screen query from the response cache
// before anything is parsed. A request that went the whole way (parsed,
// validated, variables coerced, persisted operation resolved, a cacheable
// screen with no errors) teaches it its raw form: the method, the raw body
// (POST) or query string (GET), the viewer, the role and the headers that
// persisted operations are resolved by. The same raw request by the same
// viewer in the same role is the same operation with the same variables,
// so the fast path charges the query budget and reads the generations and
// the entry in one Redis round trip (the charge's GCRA step rides in the
// pipeline of the cache's read, Config.Charge), and on a hit writes the
// stored bytes in the same envelope (Cache-Status, extensions.cache) as
// the whole path. Anything else (a miss, Redis unavailable, a bypass, a
// request never seen) continues on the whole path, already charged.

// fastMemoSize bounds the raw requests the fast path remembers.
const fastMemoSize = 10000

// persistedHeaders are the request headers persisted operations are
// resolved by (client name and version of a manifest), part of a raw key.
var persistedHeaders = []string{"Apollographql-Client-Name", "Graphql-Client-Name", "Apollographql-Client-Version", "Graphql-Client-Version"}

// fastEntry is what answering a raw request again needs.
type fastEntry struct {
	key   cache.Prepared
	alias string // the screen field's response key
	op    string // the operation's name, for the access log
}

type fastPath struct {
	c    *cache.Cache
	memo *lru.Cache[string, *fastEntry]
	hits atomic.Int64
}

func newFastPath(c *cache.Cache) *fastPath {
	memo, _ := lru.New[string, *fastEntry](fastMemoSize) // size > 0: cannot fail
	return &fastPath{c: c, memo: memo}
}

// learnSlot is filled by Responses.Serve with the screen it served.
type learnSlot struct {
	key   cache.Key
	alias string
	set   bool
}

type learnKey struct{}

type chargedKey struct{}

// charged reports whether the fast path already charged the request.
func charged(ctx context.Context) bool {
	v, _ := ctx.Value(chargedKey{}).(bool)
	return v
}

// errBodyReader returns the rest of a body that failed to read, then its
// error, so the whole path sees what the fast path saw.
type errBodyReader struct {
	io.Reader
	err error
}

func (e *errBodyReader) Read(p []byte) (int, error) {
	n, err := e.Reader.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func (e *errBodyReader) Close() error { return nil }

// replayBody is a request body the fast path read, put back for the
// whole path.
type replayBody struct{ bytes.Reader }

func (*replayBody) Close() error { return nil }

// putBack gives r the body the fast path read from it (nothing when it
// read none).
func putBack(r *http.Request, body []byte) {
	if body != nil {
		rb := &replayBody{}
		rb.Reset(body)
		r.Body = rb
	}
}

// rawKey returns the raw form of r for viewer v (GET: the query string;
// POST with a JSON body: the body, read here and returned for putBack),
// "" for a request the fast path does not take.
func rawKey(r *http.Request, v *order.User) (key string, body []byte) {
	var raw string
	switch r.Method {
	case http.MethodGet:
		raw = r.URL.RawQuery
	case http.MethodPost:
		if ct := r.Header.Get("Content-Type"); ct != ctJSON && !strings.HasPrefix(ct, ctJSON+";") {
			return "", nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			r.Body = &errBodyReader{Reader: bytes.NewReader(b), err: err}
			return "", nil
		}
		body = b
	default:
		return "", nil
	}
	var sb strings.Builder
	sb.Grow(len(raw) + len(body) + len(v.ID) + len(v.Role) + 16)
	sb.WriteString(r.Method)
	sb.WriteByte(0)
	sb.WriteString(v.ID)
	sb.WriteByte(0)
	sb.WriteString(string(v.Role))
	for _, h := range persistedHeaders {
		sb.WriteByte(0)
		if vs := r.Header[h]; len(vs) > 0 {
			sb.WriteString(strings.Join(vs, ","))
		}
	}
	sb.WriteByte(0)
	sb.WriteString(raw)
	sb.Write(body)
	return sb.String(), body
}

// serve answers r from the cache when its raw form is known and the
// entry is current. It returns true when it wrote the response (a hit, or
// the rate limit's rejection); otherwise the request to continue with
// (its body put back) and its raw key for learning ("" for none).
func (f *fastPath) serve(h *Handler, w http.ResponseWriter, r *http.Request, ct string) (bool, *http.Request, string) {
	v, ok := auth.UserFrom(r.Context())
	if !ok || v == nil || cache.BypassRequested(r.Header) {
		return false, r, ""
	}
	key, body := rawKey(r, v)
	if key == "" {
		putBack(r, body)
		return false, r, ""
	}
	e, ok := f.memo.Get(key)
	if !ok {
		putBack(r, body)
		return false, r, key
	}
	// The charge: its Redis command rides in the cache's first read (or
	// without Config.Charge, a round trip of its own before it).
	var ch Charge
	if h.cfg.Charge != nil {
		ch = h.cfg.Charge(r)
	} else if !h.allow(w, r, false, 1) {
		return true, r, ""
	}
	ctx := r.Context()
	settle := func() bool {
		if ch == nil {
			return true
		}
		ok := ch.Settle(w, r)
		ch = nil
		return ok
	}
	if r.Header.Get("If-None-Match") != "" {
		// a revalidation: the generations alone answer it
		v, err := f.c.PeekValidator(ctx, e.key, rider(ch))
		if !settle() {
			return true, r, ""
		}
		if err == nil && writeNotModified(w, r, ETag(v)) {
			f.hits.Add(1)
			return true, r, ""
		}
	}
	data, res, hit, _ := f.c.Peek(ctx, e.key, rider(ch))
	if !settle() {
		return true, r, ""
	}
	if !hit {
		// the whole path goes on, already charged
		putBack(r, body)
		return false, r.WithContext(cache.AfterMiss(context.WithValue(ctx, chargedKey{}, true), res)), key
	}
	if info := httpx.Info(ctx); info != nil && e.op != "" {
		info.SetOperation(e.op)
	}
	setHitHeaders(w.Header(), res)
	var ext [128]byte // the usual extension fits: no allocation
	h.writeReported(w, r, ct, http.StatusOK, &graphql.Response{Data: data},
		true, cache.AppendSingle(ext[:0], e.alias, res), string(res.Status))
	f.hits.Add(1)
	return true, r, ""
}

// hitHeaders holds the values of a hit's ETag and Cache-Status headers,
// so that both cost one allocation.
type hitHeaders struct {
	etag, status [1]string
	text         [80]byte
}

// setHitHeaders sets the caching headers of a hit res (see screenHeaders)
// and its Cache-Status: the values screenHeaders(h, ETag(res.Validator))
// and res.CacheStatusHeader() set.
func setHitHeaders(h http.Header, res cache.Result) {
	hv := new(hitHeaders)
	b := hv.text[:0]
	if res.Validator != "" {
		b = append(b, `W/"`...)
		b = append(b, res.Validator...)
		b = append(b, '"')
	}
	n := len(b)
	b = res.AppendCacheStatus(b)
	// hv is written no more: the strings may share its bytes (or those of
	// b, had it outgrown them).
	hv.etag[0] = unsafe.String(unsafe.SliceData(b), n)
	hv.status[0] = unsafe.String(&b[n], len(b)-n)
	hvPersonal.Set(h, cacheControlKey)
	if n > 0 {
		h[etagKey] = hv.etag[:1:1]
	}
	h[cacheStatusKey] = hv.status[:1:1]
}

// rider is ch as the cache's rider: nil (no pipeline) without a charge.
func rider(ch Charge) cache.Rider {
	if ch == nil {
		return nil
	}
	return ch
}

// learn remembers the raw form key of a request the whole path served
// from the screen in slot.
func (f *fastPath) learn(key string, slot *learnSlot, op string) {
	if key == "" || slot == nil || !slot.set {
		return
	}
	f.memo.Add(key, &fastEntry{key: f.c.Prepare(slot.key), alias: slot.alias, op: op})
}

// FastHits is the number of requests the fast path answered from the
// cache (before parsing).
func (h *Handler) FastHits() int64 {
	if h.fast == nil {
		return 0
	}
	return h.fast.hits.Load()
}
