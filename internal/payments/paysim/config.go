package paysim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shop/bff/internal/payments"
)

// setting is one setting of the command: an environment variable and the
// flag that overrides it.
type setting struct {
	env, flag, def, doc string
	set                 func(c *Config, v string) error
}

// settings is the table behind [LoadConfig] and `paysim -h`.
var settings = []setting{
	{"PAYSIM_ADDR", "addr", DefaultAddr, "listen address (host:port)", func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not host:port", v)
		}
		c.Addr = v
		return nil
	}},
	{"PAYSIM_WEBHOOK_URL", "webhook-url", DefaultWebhookURL, "the BFF's POST /webhooks/payments", func(c *Config, v string) error {
		if err := validWebhookURL(v); err != nil {
			return err
		}
		c.WebhookURL = v
		return nil
	}},
	{"WEBHOOK_SECRET", "webhook-secret", DefaultSecret, "webhook secrets, comma-separated; the first signs (prefer the variable: flags show in ps)", func(c *Config, v string) error {
		secrets := payments.ParseSecrets(v)
		if len(secrets) == 0 {
			return errors.New("no secret in the value")
		}
		c.Secret = secrets[0]
		return nil
	}},
	{"PAYSIM_LATENCY", "latency", DefaultLatency.String(), "wait before every answer to POST /charges (e.g. 800ms, 0)", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration of zero or more (e.g. 800ms)", v)
		}
		c.Latency = d
		return nil
	}},
	{"PAYSIM_DECLINE_RATE", "decline-rate", "0", "share of new charges declined (payment.failed, card_declined), 0..1", rate(func(c *Config) *float64 { return &c.DeclineRate })},
	{"PAYSIM_ERROR_RATE", "error-rate", "0", "share of charge requests answered 503, 0..1", rate(func(c *Config) *float64 { return &c.ErrorRate })},
	{"PAYSIM_TIMEOUT_RATE", "timeout-rate", "0", "share of charge requests processed but never answered, 0..1", rate(func(c *Config) *float64 { return &c.TimeoutRate })},
}

func rate(dst func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number in [0, 1]", v)
		}
		if err := validRate(r); err != nil {
			return err
		}
		*dst(c) = r
		return nil
	}
}

// LoadConfig reads the command's settings: each from its environment
// variable (through getenv), overridden by its flag in args, else its
// default. An invalid value fails naming the variable or the flag. -h
// prints the settings to usage and returns flag.ErrHelp.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("paysim", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; Usage writes to usage
	fs.Usage = func() { printUsage(usage) }
	for _, s := range settings {
		v := getenv(s.env)
		if v == "" {
			v = s.def
		}
		if err := s.set(&c, v); err != nil {
			return Config{}, fmt.Errorf("invalid %s: %w", s.env, err)
		}
		fs.Func(s.flag, s.doc, func(v string) error { return s.set(&c, v) })
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: paysim [flags]

paysim simulates the payment provider: POST /charges (Idempotency-Key
required), results reported by signed webhook to the BFF, GET /stats.
Every setting is read from its environment variable; a flag overrides it.

`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  flag\tvariable\tdefault\tmeaning")
	for _, s := range settings {
		fmt.Fprintf(tw, "  -%s\t%s\t%s\t%s\n", s.flag, s.env, s.def, s.doc)
	}
	_ = tw.Flush()
}
