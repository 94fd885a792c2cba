// Command hooksim is a receiver of the BFF's outbound webhooks for
// development and tests. `hooksim -h` lists its settings; see package
// internal/webhooks/hooksim for its behaviour.
package main

import (
	"context"
	"io"
	"log/slog"
	"net"

	"github.com/shop/bff/internal/simserver"
	"github.com/shop/bff/internal/webhooks/hooksim"
)

// keep is how many received requests the command remembers.
const keep = 10000

func main() {
	var rcv *hooksim.Receiver
	simserver.Main(simserver.Command{
		Name:    "hooksim",
		AddrEnv: "HOOKSIM_ADDR",
		Start: func(args []string, getenv func(string) string, usage io.Writer, log *slog.Logger) (string, []any, error) {
			cfg, err := hooksim.LoadConfig(args, getenv, usage)
			if err != nil {
				return "", nil, err
			}
			cfg.Logger = log
			cfg.Keep = keep
			if rcv, err = hooksim.New(cfg); err != nil {
				return "", nil, err
			}
			return cfg.Addr, []any{"latency", cfg.Latency, "failureRate", cfg.FailureRate,
				"timeoutRate", cfg.TimeoutRate, "verifying", cfg.Secret != ""}, nil
		},
		Serve: func(ctx context.Context, ln net.Listener, _ *slog.Logger) error {
			return rcv.Serve(ctx, ln)
		},
	})
}
