// Command paysim is the payment provider simulator for development, tests
// and drills (payments.md). `paysim -h` lists its settings; see package
// internal/payments/paysim for its behaviour.
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
	"time"

	"github.com/shop/bff/internal/payments/paysim"
)

func main() {
	cfg, err := paysim.LoadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "paysim:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Logger = log
	sim, err := paysim.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "paysim: PAYSIM_ADDR:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Info("paysim listening", "addr", ln.Addr().String(), "webhookUrl", cfg.WebhookURL, "latency", cfg.Latency,
		"declineRate", cfg.DeclineRate, "errorRate", cfg.ErrorRate, "timeoutRate", cfg.TimeoutRate)
	err = sim.Serve(ctx, ln, 10*time.Second)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("paysim stopped; webhooks still undelivered after 10s were abandoned", "stats", sim.Stats())
	case err != nil:
		log.Error("paysim stopped", "error", err.Error())
		os.Exit(1)
	default:
		log.Info("paysim stopped", "stats", sim.Stats())
	}
}
