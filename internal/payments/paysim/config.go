package paysim

import (
	"errors"
	"io"
	"time"

	"github.com/shop/bff/internal/payments"
	"github.com/shop/bff/internal/simserver"
)

// settings is the table behind [LoadConfig] and `paysim -h`.
var settings = simserver.Settings[Config]{
	Command: "paysim",
	About: `paysim simulates the payment provider: POST /charges (Idempotency-Key
required), results reported by signed webhook to the BFF, GET /stats.
Every setting is read from its environment variable; a flag overrides it.
`,
	List: []simserver.Setting[Config]{
		{Env: "PAYSIM_ADDR", Flag: "addr", Default: DefaultAddr, Doc: "listen address (host:port)",
			Set: simserver.HostPort(func(c *Config) *string { return &c.Addr })},
		{Env: "PAYSIM_WEBHOOK_URL", Flag: "webhook-url", Default: DefaultWebhookURL, Doc: "the BFF's POST /webhooks/payments",
			Set: func(c *Config, v string) error {
				if err := validWebhookURL(v); err != nil {
					return err
				}
				c.WebhookURL = v
				return nil
			}},
		{Env: "WEBHOOK_SECRET", Flag: "webhook-secret", Default: DefaultSecret,
			Doc: "webhook secrets, comma-separated; the first signs (prefer the variable: flags show in ps)",
			Set: func(c *Config, v string) error {
				secrets := payments.ParseSecrets(v)
				if len(secrets) == 0 {
					return errors.New("no secret in the value")
				}
				c.Secret = secrets[0]
				return nil
			}},
		{Env: "PAYSIM_LATENCY", Flag: "latency", Default: DefaultLatency.String(), Doc: "wait before every answer to POST /charges (e.g. 800ms, 0)",
			Set: simserver.Duration(func(c *Config) *time.Duration { return &c.Latency }, "800ms")},
		{Env: "PAYSIM_DECLINE_RATE", Flag: "decline-rate", Default: "0", Doc: "share of new charges declined (payment.failed, card_declined), 0..1",
			Set: simserver.Rate(func(c *Config) *float64 { return &c.DeclineRate })},
		{Env: "PAYSIM_ERROR_RATE", Flag: "error-rate", Default: "0", Doc: "share of charge requests answered 503, 0..1",
			Set: simserver.Rate(func(c *Config) *float64 { return &c.ErrorRate })},
		{Env: "PAYSIM_TIMEOUT_RATE", Flag: "timeout-rate", Default: "0", Doc: "share of charge requests processed but never answered, 0..1",
			Set: simserver.Rate(func(c *Config) *float64 { return &c.TimeoutRate })},
	},
}

// LoadConfig reads the command's settings: each from its environment
// variable (through getenv), overridden by its flag in args, else its
// default. An invalid value fails naming the variable or the flag. -h
// prints the settings to usage and returns flag.ErrHelp.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	return settings.Load(args, getenv, usage)
}
