package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// auditPackages are the npm packages of the GraphQL-over-HTTP audit,
// pinned.
var auditPackages = []string{"graphql-http@1.23.1", "graphql@16.11.0"}

// TestGraphQLOverHTTPAudit runs the graphql-http audit suite against a
// running server: every MUST and SHOULD rule must pass.
func TestGraphQLOverHTTPAudit(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (%v): install Node.js (apt-get install nodejs npm) to run the GraphQL-over-HTTP audit", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "bff-graphql-http-audit")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "graphql-http", "package.json")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("npm", append([]string{"install", "--no-audit", "--no-fund", "--silent", "--prefix", dir}, auditPackages...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install %v: %v\n%s", auditPackages, err, out)
		}
	}
	script, err := filepath.Abs("testdata/graphql-http-audit.mjs")
	if err != nil {
		t.Fatal(err)
	}
	// the script imports graphql-http from the cache directory's node_modules
	link := filepath.Join(dir, "audit.mjs")
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, src, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	in := e.start(nil, Options{})
	out, err := exec.Command(node, link, in.URL+"/graphql").CombinedOutput()
	t.Logf("graphql-http audit: %s", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("the GraphQL-over-HTTP audit found problems: %v", err)
	}
}
