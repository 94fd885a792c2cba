// Command paysim is the payment provider simulator for development, tests
// and drills (payments.md). `paysim -h` lists its settings; see package
// internal/payments/paysim for its behaviour.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/shop/bff/internal/payments/paysim"
	"github.com/shop/bff/internal/simserver"
)

// grace is how long a stopping simulator still tries to deliver its
// pending webhooks.
const grace = 10 * time.Second

func main() {
	var sim *paysim.Server
	simserver.Main(simserver.Command{
		Name:    "paysim",
		AddrEnv: "PAYSIM_ADDR",
		Start: func(args []string, getenv func(string) string, usage io.Writer, log *slog.Logger) (string, []any, error) {
			cfg, err := paysim.LoadConfig(args, getenv, usage)
			if err != nil {
				return "", nil, err
			}
			cfg.Logger = log
			if sim, err = paysim.New(cfg); err != nil {
				return "", nil, err
			}
			return cfg.Addr, []any{"webhookUrl", cfg.WebhookURL, "latency", cfg.Latency,
				"declineRate", cfg.DeclineRate, "errorRate", cfg.ErrorRate, "timeoutRate", cfg.TimeoutRate}, nil
		},
		Serve: func(ctx context.Context, ln net.Listener, log *slog.Logger) error {
			err := sim.Serve(ctx, ln, grace)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				log.Warn("paysim stopped; webhooks still undelivered after 10s were abandoned", "stats", sim.Stats())
			case err != nil:
				return err
			default:
				log.Info("paysim stopped", "stats", sim.Stats())
			}
			return nil
		},
	})
}
