// Command hooksim is a receiver of the BFF's outbound webhooks for
// development and tests. `hooksim -h` lists its settings; see package
// internal/webhooks/hooksim for its behaviour.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/shop/bff/internal/webhooks/hooksim"
)

func main() {
	cfg, err := hooksim.LoadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hooksim:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Logger = log
	cfg.Keep = 10000
	sim, err := hooksim.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hooksim: HOOKSIM_ADDR:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Info("hooksim listening", "addr", ln.Addr().String(), "latency", cfg.Latency, "failureRate", cfg.FailureRate,
		"timeoutRate", cfg.TimeoutRate, "verifying", cfg.Secret != "")
	if err := sim.Serve(ctx, ln); err != nil {
		log.Error("hooksim stopped", "error", err.Error())
		os.Exit(1)
	}
}
