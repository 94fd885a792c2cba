// Package simserver is what the simulator commands (cmd/paysim,
// cmd/hooksim) share: a table of settings, each read from its environment
// variable and overridden by its flag, listed by -h; and the run of the
// command (settings, a text logger on stderr, the listener, serving until
// SIGTERM or an interrupt, exit statuses).
package simserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Setting is one setting of a simulator's configuration C: an environment
// variable, the flag that overrides it, its default, its meaning, and how a
// value is checked and applied.
type Setting[C any] struct {
	Env, Flag, Default, Doc string
	Set                     func(c *C, v string) error
}

// Settings is a simulator's table of settings.
type Settings[C any] struct {
	// Command is the command's name (flag set and usage).
	Command string
	// About is the paragraph of the usage between its first line and the
	// table, ending with a newline.
	About string
	// List holds the settings, in the order -h lists them.
	List []Setting[C]
}

// Load reads the settings: each from its environment variable (through
// getenv), overridden by its flag in args, else its default. An invalid
// value fails naming the variable or the flag. -h prints the usage to
// usage and returns flag.ErrHelp.
func (s Settings[C]) Load(args []string, getenv func(string) string, usage io.Writer) (C, error) {
	var c, zero C
	fs := flag.NewFlagSet(s.Command, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; Usage writes to usage
	fs.Usage = func() { s.PrintUsage(usage) }
	for _, st := range s.List {
		v := getenv(st.Env)
		if v == "" {
			v = st.Default
		}
		if err := st.Set(&c, v); err != nil {
			return zero, fmt.Errorf("invalid %s: %w", st.Env, err)
		}
		fs.Func(st.Flag, st.Doc, func(v string) error { return st.Set(&c, v) })
	}
	if err := fs.Parse(args); err != nil {
		return zero, err
	}
	if fs.NArg() > 0 {
		return zero, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, nil
}

// PrintUsage writes the usage: the command line, About, and the table of
// flags, variables, defaults and meanings.
func (s Settings[C]) PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n", s.Command, s.About)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  flag\tvariable\tdefault\tmeaning")
	for _, st := range s.List {
		fmt.Fprintf(tw, "  -%s\t%s\t%s\t%s\n", st.Flag, st.Env, st.Default, st.Doc)
	}
	_ = tw.Flush()
}

// HostPort is the setter of a listen address (host:port) at dst.
func HostPort[C any](dst func(*C) *string) func(*C, string) error {
	return func(c *C, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q is not host:port", v)
		}
		*dst(c) = v
		return nil
	}
}

// Duration is the setter of a duration of zero or more at dst; example
// (e.g. "800ms") is named when a value is refused.
func Duration[C any](dst func(*C) *time.Duration, example string) func(*C, string) error {
	return func(c *C, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration of zero or more (e.g. %s)", v, example)
		}
		*dst(c) = d
		return nil
	}
}

// Rate is the setter of a share from 0 to 1 at dst.
func Rate[C any](dst func(*C) *float64) func(*C, string) error {
	return func(c *C, v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("%q is not a number in [0, 1]", v)
		}
		*dst(c) = r
		return nil
	}
}

// Command is one simulator command for [Main].
type Command struct {
	// Name prefixes the command's messages ("paysim").
	Name string
	// AddrEnv is the variable of the listen address, named when the
	// address cannot be listened on.
	AddrEnv string
	// Start reads the settings (from args and getenv; -h prints the usage
	// to usage and returns flag.ErrHelp) and builds the simulator, which
	// logs to log. It returns the listen address and the attributes of
	// the "listening" log line.
	Start func(args []string, getenv func(string) string, usage io.Writer, log *slog.Logger) (addr string, attrs []any, err error)
	// Serve serves the simulator built by Start on ln until ctx ends, and
	// logs how it stopped; an error ends the command with status 1.
	Serve func(ctx context.Context, ln net.Listener, log *slog.Logger) error
}

// Main runs cmd as the process: -h exits 0 after the usage; invalid
// settings or a simulator that cannot be built exit 2; a listen address
// that cannot be used, or serving that fails, exit 1. It serves until
// SIGTERM or an interrupt.
func Main(cmd Command) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	addr, attrs, err := cmd.Start(os.Args[1:], os.Getenv, os.Stderr, log)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd.Name, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", cmd.Name, cmd.AddrEnv, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Info(cmd.Name+" listening", append([]any{"addr", ln.Addr().String()}, attrs...)...)
	if err := cmd.Serve(ctx, ln, log); err != nil {
		log.Error(cmd.Name+" stopped", "error", err.Error())
		stop()
		os.Exit(1)
	}
}
