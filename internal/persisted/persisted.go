// Package persisted serves persisted operations (trusted documents):
// manifests of {id: document} per client name and version, loaded at
// start. A client sends an operation by its id (documentId, or Apollo's
// extensions.persistedQuery.sha256Hash without a query) over GET or POST.
// In ModeRequire (production) only manifest operations run: an arbitrary
// document is refused, a known document sent as text runs; in ModeAllow
// (development) anything runs. Requests are counted per client name and
// version (apollographql-client-name/-version or graphql-client-name/
// -version headers), for the names and versions of the manifests.
package persisted

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// Mode says which documents run.
type Mode string

const (
	// ModeAllow runs arbitrary documents and manifest ids (development).
	ModeAllow Mode = "allow"
	// ModeRequire runs manifest operations only (production).
	ModeRequire Mode = "require"
)

// DocumentIDKey is the key under which a request's documentId travels in
// the raw params' extensions from the request reader to Resolve (the
// same as gqlhttp.DocumentIDKey).
const DocumentIDKey = "documentId"

// Headers naming the client, in order of preference.
var (
	clientNameHeaders    = []string{"apollographql-client-name", "graphql-client-name"}
	clientVersionHeaders = []string{"apollographql-client-version", "graphql-client-version"}
)

// labelOther stands for clients and versions without a manifest.
const labelOther = "other"

//go:embed manifests
var builtin embed.FS

// BuiltinFS holds the manifests shipped with the binary (the web app's),
// as <client name>/<version>.json.
func BuiltinFS() fs.FS {
	sub, err := fs.Sub(builtin, "manifests")
	if err != nil {
		panic(err) // embedded at compile time
	}
	return sub
}

// client is one client name and version.
type client struct{ name, version string }

// Store holds the manifests.
type Store struct {
	mode    Mode
	byID    map[string]string            // every manifest's documents
	clients map[client]map[string]string // per client name and version
	names   map[string]bool

	requests *prometheus.CounterVec
}

// Config configures [Load].
type Config struct {
	// Mode is ModeAllow or ModeRequire.
	Mode Mode
	// Dirs are read in order; each holds <client name>/<version>.json
	// files of {"<id>": "<document>"}. A later manifest of the same client
	// and version replaces an earlier one.
	Dirs []fs.FS
	// Schema, when set, validates every document at load time.
	Schema *ast.Schema
}

// Load reads the manifests. A document that does not parse or validate,
// or an id that is not the sha256 of its document, fails naming the file.
func Load(cfg Config) (*Store, error) {
	if cfg.Mode != ModeAllow && cfg.Mode != ModeRequire {
		return nil, fmt.Errorf("mode %q: want %s or %s", cfg.Mode, ModeAllow, ModeRequire)
	}
	s := &Store{mode: cfg.Mode, byID: map[string]string{}, clients: map[client]map[string]string{}, names: map[string]bool{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bff_graphql_client_requests_total",
			Help: "GraphQL requests by client name and version (of the persisted-operation manifests; others as \"other\") and kind (persisted, document)."},
			[]string{"client_name", "client_version", "kind"})}
	for _, dir := range cfg.Dirs {
		err := fs.WalkDir(dir, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Ext(p) != ".json" {
				return err
			}
			name, file := path.Split(p)
			name = strings.Trim(name, "/")
			if name == "" || strings.Contains(name, "/") {
				return fmt.Errorf("%s: want <client name>/<version>.json", p)
			}
			raw, err := fs.ReadFile(dir, p)
			if err != nil {
				return err
			}
			docs := map[string]string{}
			if err := json.Unmarshal(raw, &docs); err != nil {
				return fmt.Errorf("%s: want a JSON object of id to document: %v", p, err)
			}
			for id, doc := range docs {
				if id != ID(doc) {
					return fmt.Errorf("%s: id %s is not the sha256 of its document (%s)", p, id, ID(doc))
				}
				if cfg.Schema != nil {
					if err := Validate(cfg.Schema, doc); err != nil {
						return fmt.Errorf("%s: document %s: %v", p, id, err)
					}
				}
				s.byID[id] = doc
			}
			s.clients[client{name, strings.TrimSuffix(file, ".json")}] = docs
			s.names[name] = true
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return s, nil
}

// OpenDir returns the manifests directory dir ("" for none).
func OpenDir(dir string) ([]fs.FS, error) {
	if dir == "" {
		return nil, nil
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory of manifests", dir)
	}
	return []fs.FS{os.DirFS(dir)}, nil
}

// ID is the id of a document in a manifest: its sha256, hex.
func ID(doc string) string {
	sum := sha256.Sum256([]byte(doc))
	return hex.EncodeToString(sum[:])
}

// Validate parses and validates doc against schema.
func Validate(schema *ast.Schema, doc string) error {
	d, err := parser.ParseQuery(&ast.Source{Input: doc})
	if err != nil {
		return err
	}
	if errs := validator.Validate(schema, d); len(errs) > 0 {
		return errs
	}
	return nil
}

// Mode is the store's mode.
func (s *Store) Mode() Mode { return s.mode }

// Collector is the per-client request counter, for a Prometheus registry.
func (s *Store) Collector() prometheus.Collector { return s.requests }

// Manifest returns the documents of one client name and version.
func (s *Store) Manifest(name, version string) map[string]string {
	return s.clients[client{name, version}]
}

// Clients lists "name/version" of every manifest, sorted.
func (s *Store) Clients() []string {
	var out []string
	for c := range s.clients {
		out = append(out, c.name+"/"+c.version)
	}
	sort.Strings(out)
	return out
}

// clientOf reads the client name and version of r.
func clientOf(h http.Header) client {
	var c client
	for _, k := range clientNameHeaders {
		if c.name = strings.TrimSpace(h.Get(k)); c.name != "" {
			break
		}
	}
	for _, k := range clientVersionHeaders {
		if c.version = strings.TrimSpace(h.Get(k)); c.version != "" {
			break
		}
	}
	return c
}

// Resolve turns a request for a persisted operation into its document and
// enforces the mode, before admission reads the query: a documentId, or a
// persistedQuery hash without a query, is looked up in the manifest of the
// request's client (or, for a client without one, in every manifest); an
// unknown id is PERSISTED_QUERY_NOT_FOUND (in ModeAllow a persistedQuery
// hash that no manifest knows is left to automatic persisted queries). In
// ModeRequire a document sent as text runs only when a manifest holds it.
func (s *Store) Resolve(_ context.Context, h http.Header, p *graphql.RawParams) *gqlerror.Error {
	c := clientOf(h)
	docs, known := s.clients[c]
	nameLabel, versionLabel := labelOther, labelOther
	if s.names[c.name] {
		nameLabel = c.name
		if known {
			versionLabel = c.version
		}
	}
	lookup := func(id string) (string, bool) {
		id = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(id)), "sha256:")
		if known {
			d, ok := docs[id]
			return d, ok
		}
		d, ok := s.byID[id]
		return d, ok
	}
	if raw, ok := p.Extensions[DocumentIDKey]; ok {
		delete(p.Extensions, DocumentIDKey)
		id, _ := raw.(string)
		if p.Query != "" {
			return badRequest("send either documentId or query, not both")
		}
		doc, ok := lookup(id)
		if !ok {
			return notFound()
		}
		p.Query = doc
		s.requests.WithLabelValues(nameLabel, versionLabel, "persisted").Inc()
		return nil
	}
	if pq, ok := p.Extensions["persistedQuery"].(map[string]any); ok && p.Query == "" {
		hash, _ := pq["sha256Hash"].(string)
		if doc, ok := lookup(hash); ok {
			p.Query = doc
			delete(p.Extensions, "persistedQuery") // resolved: not an automatic persisted query
			s.requests.WithLabelValues(nameLabel, versionLabel, "persisted").Inc()
			return nil
		}
		if s.mode == ModeRequire {
			return notFound()
		}
		s.requests.WithLabelValues(nameLabel, versionLabel, "document").Inc()
		return nil // automatic persisted queries look it up
	}
	if s.mode == ModeRequire && p.Query != "" {
		if _, ok := lookup(ID(p.Query)); !ok {
			return badRequest("this server runs only the operations of its persisted-operation manifests: send the operation's documentId (or a document of the manifest)")
		}
		delete(p.Extensions, "persistedQuery") // a manifest document needs no registration
	}
	s.requests.WithLabelValues(nameLabel, versionLabel, "document").Inc()
	return nil
}

func notFound() *gqlerror.Error {
	e := gqlerror.Errorf("PersistedQueryNotFound")
	e.Extensions = map[string]any{"code": string(httpx.CodePersistedQueryNotFound)}
	return e
}

func badRequest(msg string) *gqlerror.Error {
	oe := order.Errorf(httpx.CodeBadRequest, "%s", msg)
	return &gqlerror.Error{Message: oe.Message, Err: oe}
}
