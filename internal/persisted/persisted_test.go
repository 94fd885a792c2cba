package persisted

import (
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"testing/fstest"

	"github.com/99designs/gqlgen/graphql"

	"github.com/shop/bff/graph"
	"github.com/shop/bff/internal/order"
)

// TestWebManifestIsCurrent: the built-in manifest is exactly the web app's
// documents (web/static/js/queries.js, as `make manifest` writes it), and
// every document validates against the served schema.
func TestWebManifestIsCurrent(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (%v): install Node.js (apt-get install nodejs) to check the web app's manifest", err)
	}
	want, err := exec.Command(node, "../../web/testdata/manifest.mjs").Output()
	if err != nil {
		t.Fatalf("manifest.mjs: %v", err)
	}
	got, err := os.ReadFile("manifests/web/1.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("internal/persisted/manifests/web/1.json is not the web app's documents: run `make manifest` and commit it")
	}
	s, err := Load(Config{Mode: ModeRequire, Dirs: []fs.FS{BuiltinFS()}, Schema: graph.NewExecutableSchema(graph.Config{}).Schema()})
	if err != nil {
		t.Fatalf("the web manifest does not load against the schema: %v", err)
	}
	if n := len(s.Manifest("web", "1")); n < 10 {
		t.Fatalf("web/1 has %d documents", n)
	}
}

// TestLoadRefusesBadManifests: an id that is not its document's sha256, or a
// document that does not validate, fails the start naming the file.
func TestLoadRefusesBadManifests(t *testing.T) {
	schema := graph.NewExecutableSchema(graph.Config{}).Schema()
	ok := "query V { viewer { id } }"
	for name, body := range map[string]string{
		"wrong id":  `{"` + ID("other") + `": "query V { viewer { id } }"}`,
		"invalid":   `{"` + ID("query V { nope }") + `": "query V { nope }"}`,
		"not a map": `["` + ok + `"]`,
	} {
		_, err := Load(Config{Mode: ModeAllow, Schema: schema, Dirs: []fs.FS{fstest.MapFS{"ios/1.json": {Data: []byte(body)}}}})
		if err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := Load(Config{Mode: ModeAllow, Schema: schema, Dirs: []fs.FS{fstest.MapFS{"ios/1.json": {Data: []byte(`{"` + ID(ok) + `": "` + ok + `"}`)}}}}); err != nil {
		t.Errorf("a good manifest: %v", err)
	}
}

// TestResolve: ids resolve within the client's own manifest, unknown ids
// are PERSISTED_QUERY_NOT_FOUND, and require mode refuses other documents.
func TestResolve(t *testing.T) {
	a, b := "query A { viewer { id } }", "query B { viewer { name } }"
	dirs := []fs.FS{fstest.MapFS{
		"ios/2.json":     {Data: []byte(`{"` + ID(a) + `": "` + a + `"}`)},
		"android/7.json": {Data: []byte(`{"` + ID(b) + `": "` + b + `"}`)},
	}}
	s, err := Load(Config{Mode: ModeRequire, Dirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(name, version string) http.Header {
		h := http.Header{}
		if name != "" {
			h.Set("apollographql-client-name", name)
			h.Set("apollographql-client-version", version)
		}
		return h
	}
	code := func(h http.Header, p *graphql.RawParams) string {
		if e := s.Resolve(t.Context(), h, p); e != nil {
			if c, _ := e.Extensions["code"].(string); c != "" {
				return c
			}
			return string(order.ErrorCode(e.Err))
		}
		return ""
	}
	p := &graphql.RawParams{Extensions: map[string]any{DocumentIDKey: "sha256:" + ID(a)}}
	if c := code(hdr("ios", "2"), p); c != "" || p.Query != a {
		t.Errorf("ios documentId: %q %q", c, p.Query)
	}
	p = &graphql.RawParams{Extensions: map[string]any{DocumentIDKey: ID(b)}}
	if c := code(hdr("ios", "2"), p); c != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("android's id from ios: %q", c)
	}
	p = &graphql.RawParams{Extensions: map[string]any{DocumentIDKey: ID(b)}}
	if c := code(hdr("", ""), p); c != "" || p.Query != b {
		t.Errorf("an unnamed client finds any manifest's id: %q", c)
	}
	p = &graphql.RawParams{Extensions: map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": ID(a)}}}
	if c := code(hdr("ios", "2"), p); c != "" || p.Query != a || p.Extensions["persistedQuery"] != nil {
		t.Errorf("persistedQuery hash: %q %q %v", c, p.Query, p.Extensions)
	}
	p = &graphql.RawParams{Extensions: map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": ID("x")}}}
	if c := code(hdr("ios", "2"), p); c != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("unknown hash: %q", c)
	}
	if c := code(hdr("ios", "2"), &graphql.RawParams{Query: "{ viewer { id } }"}); c != "BAD_REQUEST" {
		t.Errorf("arbitrary document in require mode: %q", c)
	}
	if c := code(hdr("web", "9"), &graphql.RawParams{Query: a}); c != "" {
		t.Errorf("a manifest document as text: %q", c)
	}
}
