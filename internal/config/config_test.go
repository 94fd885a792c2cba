package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.CacheTTL != 60*time.Second || c.CacheTimeout != 50*time.Millisecond ||
		c.RateQueriesPerSecond != 50 || c.RateMutationsBurst != 20 || c.MaxBodyBytes != 1<<20 ||
		c.StreamReplayWindow != 24*time.Hour || c.StreamHeartbeat != 15*time.Second || c.QueryMaxDepth != 15 ||
		!c.Development() || c.JWTSecrets[0] != DevJWTSecret || c.WebhookSecrets[0] != DevWebhookSecret {
		t.Fatalf("defaults: %+v", c)
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
	c, err := Load(env(map[string]string{"WEBHOOK_SECRET": "new, old", "CORS_ORIGINS": "https://shop.example, https://m.shop.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WebhookSecrets) != 2 || c.WebhookSecrets[0] != "new" || c.WebhookSecrets[1] != "old" || len(c.CORSOrigins) != 2 {
		t.Fatalf("%q %q", c.WebhookSecrets, c.CORSOrigins)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var b bytes.Buffer
	Usage(&b)
	for _, v := range table {
		if !strings.Contains(b.String(), v.name) {
			t.Errorf("usage lacks %s", v.name)
		}
	}
}
