// Command bff is the shop's GraphQL backend-for-frontend.
//
//	bff [serve]                 serve the API (applies pending migrations unless MIGRATE_ON_START=false)
//	bff migrate                 apply pending migrations and exit
//	bff seed [--customers N]    write the demo data (idempotent)
//	bff token <email>           print a bearer token for a seeded user (development secret only)
//	bff -h                      list the environment variables with their defaults
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/heapfloor"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bff:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: bff [serve | migrate | seed [--customers N] | token <email>]

Configuration comes from the environment:

`)
	config.Usage(w)
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "-h", "--help", "-help", "help":
		usage(stdout)
		return flag.ErrHelp
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve":
		return serve(ctx, cfg, stdout)
	case "migrate":
		return withStore(ctx, cfg, func(s *postgres.Store) error { return s.Migrate(ctx) })
	case "seed":
		fs := flag.NewFlagSet("seed", flag.ContinueOnError)
		fs.SetOutput(stderr)
		n := fs.Int("customers", 0, "extra customers customer0001@example.com… with orders, for benchmarks")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return withStore(ctx, cfg, func(s *postgres.Store) error {
			if err := s.Migrate(ctx); err != nil {
				return err
			}
			return s.Seed(ctx, postgres.SeedOptions{Customers: *n})
		})
	case "token":
		if len(args) != 1 {
			return errors.New("usage: bff token <email>")
		}
		return token(ctx, cfg, args[0], stdout)
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", cmd)
}

func withStore(ctx context.Context, cfg *config.Config, fn func(*postgres.Store) error) error {
	s, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MigrateURL: cfg.DatabaseMigrateURL, MaxConns: 4, QueryTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

func serve(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	// A process-wide setting, so here rather than in server.New (tests run
	// many servers in one process).
	gc := heapfloor.Start(uint64(cfg.GCMinHeapBytes))
	defer gc.Stop()
	// The server sets up tracing from cfg (OTEL_* variables) and flushes
	// it on Close.
	srv, err := server.New(ctx, cfg, server.Options{})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	fmt.Fprintf(stdout, "bff listening on %s (GraphQL at /graphql, web app at /, GraphiQL at /graphiql)\n", ln.Addr())
	return srv.Serve(ctx, ln)
}

func token(ctx context.Context, cfg *config.Config, email string, stdout io.Writer) error {
	if !cfg.Development() {
		return errors.New("token: only in development (APP_ENV=development) with the development secret")
	}
	return withStore(ctx, cfg, func(s *postgres.Store) error {
		u, err := s.UserByEmail(ctx, email)
		if err != nil {
			return fmt.Errorf("no seeded user %s (run `bff seed`): %w", email, err)
		}
		iss, err := auth.NewIssuer(server.AuthConfig(cfg))
		if err != nil {
			return err
		}
		tok, exp, err := iss.Issue(u)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# %s (%s), expires %s\n%s\n", u.Email, u.Role, exp.UTC().Format(time.RFC3339), tok)
		return nil
	})
}
