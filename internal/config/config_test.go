package config

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(env(map[string]string{"APP_ENV": "development"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.CacheTTL != 60*time.Second || c.CacheTimeout != 50*time.Millisecond ||
		c.RateQueriesPerSecond != 50 || c.RateMutationsBurst != 20 || c.MaxBodyBytes != 1<<20 ||
		c.StreamReplayWindow != 24*time.Hour || c.StreamHeartbeat != 15*time.Second || c.QueryMaxDepth != 15 ||
		!c.Development() || c.JWTSecrets[0] != DevJWTSecret || c.WebhookSecrets[0] != DevWebhookSecret ||
		!c.GraphiQLOn() || !c.PublicMetrics() || c.BodyReadTimeout != 10*time.Second || c.JWTMaxLifetime != 7*24*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
}

// A binary started without configuration is a production one: it refuses
// to start without secrets, and with them it serves neither the demo
// sign-in, GraphiQL nor /metrics on the API port.
func TestProductionByDefault(t *testing.T) {
	_, err := Load(env(nil))
	if err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("no configuration: %v, want JWT_SECRET required", err)
	}
	c, err := Load(env(map[string]string{"JWT_SECRET": strings.Repeat("j", 32), "WEBHOOK_SECRET": strings.Repeat("w", 32)}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Env != "production" || c.Development() || c.GraphiQLOn() || c.PublicMetrics() {
		t.Fatalf("unset APP_ENV: env %q graphiql %v public metrics %v", c.Env, c.GraphiQLOn(), c.PublicMetrics())
	}
	for _, m := range []map[string]string{
		{"JWT_SECRET": strings.Repeat("j", 31), "WEBHOOK_SECRET": strings.Repeat("w", 32)},
		{"JWT_SECRET": strings.Repeat("j", 32), "WEBHOOK_SECRET": strings.Repeat("w", 31)},
		{"JWT_SECRET": strings.Repeat("j", 32), "WEBHOOK_SECRET": strings.Repeat("w", 32) + ",short"},
		{"JWT_SECRET": DevJWTSecret, "WEBHOOK_SECRET": strings.Repeat("w", 32)},
		{"JWT_SECRET": strings.Repeat("j", 32), "WEBHOOK_SECRET": DevWebhookSecret},
		{"APP_ENV": "development", "WEBHOOK_SECRET": "short"},
	} {
		if _, err := Load(env(m)); err == nil {
			t.Errorf("%v accepted", m)
		}
	}
}

func TestInvalidValuesNameTheirVariable(t *testing.T) {
	for name, val := range map[string]string{
		"CACHE_TTL":                     "soon",
		"CACHE_TIMEOUT":                 "0s",
		"RATE_LIMIT_QUERIES_PER_SECOND": "-1",
		"MAX_BODY_BYTES":                "12",
		"DATABASE_URL":                  "mysql://x",
		"PAYMENTS_URL":                  "not a url",
		"APP_ENV":                       "staging",
		"INTROSPECTION":                 "maybe",
		"LOG_LEVEL":                     "loud",
		"PG_MAX_CONNS":                  "0",
		"GC_MIN_HEAP_BYTES":             "-1",
	} {
		_, err := Load(env(map[string]string{name: val}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v does not name the variable", name, val, err)
		}
	}
	for _, m := range []map[string]string{
		{"APP_ENV": "production"},
		{"APP_ENV": "production", "JWT_SECRET": "0123456789abcdef0123456789abcdef"},
		{"CORS_ORIGINS": "*"},
		{"TLS_CERT_FILE": "/x.pem"},
	} {
		if _, err := Load(env(m)); err == nil {
			t.Errorf("%v accepted", m)
		}
	}
}

func TestListsAndRotation(t *testing.T) {
	newS, oldS := "new-"+strings.Repeat("n", 28), "old-"+strings.Repeat("o", 28)
	c, err := Load(env(map[string]string{"APP_ENV": "development", "WEBHOOK_SECRET": newS + ", " + oldS, "CORS_ORIGINS": "https://shop.example, https://m.shop.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WebhookSecrets) != 2 || c.WebhookSecrets[0] != newS || c.WebhookSecrets[1] != oldS || len(c.CORSOrigins) != 2 {
		t.Fatalf("%q %q", c.WebhookSecrets, c.CORSOrigins)
	}
}

// Every variable the BFF reads is in the one table: Load asks for each
// table entry (and only those), `bff -h` and the README list each, and no
// code of the served binary outside the table reads the environment by name.
func TestUsageListsEveryVariable(t *testing.T) {
	read := map[string]bool{}
	if _, err := Load(func(k string) string {
		read[k] = true
		if k == "APP_ENV" {
			return "development" // the defaults of every other variable are valid there
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	if len(read) == 0 || len(read) != len(table) {
		t.Fatalf("Load read %d variables, the table has %d", len(read), len(table))
	}
	var usage bytes.Buffer
	Usage(&usage)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range read {
		if !strings.Contains(usage.String(), name) {
			t.Errorf("bff -h lacks %s", name)
		}
		if !regexp.MustCompile(`\b` + name + `\b`).Match(readme) {
			t.Errorf("README.md lacks %s", name)
		}
	}
	getenv := regexp.MustCompile(`os\.(?:Getenv|LookupEnv)\("([A-Z][A-Z0-9_]*)"\)`)
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// the served binary's code: not the tools and test drivers beside it
		// (the load tool, the fault drill, the cluster test, test access)
		skip := map[string]bool{"tools": true, "testenv": true, "drill": true, "clustertest": true}
		if d.IsDir() && (skip[d.Name()] || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range getenv.FindAllSubmatch(b, -1) {
			if name := string(m[1]); !read[name] {
				t.Errorf("%s reads %s, which the config table does not list", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
