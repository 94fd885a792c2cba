package simserver

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

type conf struct {
	Addr  string
	Wait  time.Duration
	Share float64
}

var testSettings = Settings[conf]{
	Command: "sim",
	About:   "sim does nothing.\n",
	List: []Setting[conf]{
		{Env: "SIM_ADDR", Flag: "addr", Default: "127.0.0.1:1", Doc: "listen address", Set: HostPort(func(c *conf) *string { return &c.Addr })},
		{Env: "SIM_WAIT", Flag: "wait", Default: "5ms", Doc: "wait", Set: Duration(func(c *conf) *time.Duration { return &c.Wait }, "5ms")},
		{Env: "SIM_SHARE", Flag: "share", Default: "0", Doc: "share", Set: Rate(func(c *conf) *float64 { return &c.Share })},
	},
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaultsEnvThenFlags(t *testing.T) {
	c, err := testSettings.Load(nil, env(nil), io.Discard)
	if err != nil || c != (conf{Addr: "127.0.0.1:1", Wait: 5 * time.Millisecond}) {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	e := env(map[string]string{"SIM_ADDR": ":2", "SIM_WAIT": "0", "SIM_SHARE": "0.5"})
	if c, err = testSettings.Load(nil, e, io.Discard); err != nil || c != (conf{Addr: ":2", Share: 0.5}) {
		t.Fatalf("env: %+v, %v", c, err)
	}
	if c, err = testSettings.Load([]string{"-addr", ":3", "-share=1"}, e, io.Discard); err != nil || c != (conf{Addr: ":3", Share: 1}) {
		t.Fatalf("flags over env: %+v, %v", c, err)
	}
}

func TestLoadNamesWhatIsInvalid(t *testing.T) {
	for name, value := range map[string]string{"SIM_ADDR": "nope", "SIM_WAIT": "-1s", "SIM_SHARE": "NaN"} {
		if _, err := testSettings.Load(nil, env(map[string]string{name: value}), io.Discard); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming %s", name, value, err, name)
		}
	}
	for _, arg := range []string{"-share=1.5", "-wait=soon"} {
		flagName := strings.SplitN(arg, "=", 2)[0]
		if _, err := testSettings.Load([]string{arg}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%s: %v, want an error naming %s", arg, err, flagName)
		}
	}
	if _, err := testSettings.Load([]string{"extra"}, env(nil), io.Discard); err == nil {
		t.Error("a positional argument was accepted")
	}
}

func TestHelpPrintsTheTable(t *testing.T) {
	var out bytes.Buffer
	if _, err := testSettings.Load([]string{"-h"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	want := "Usage: sim [flags]\n\nsim does nothing.\n\n" +
		"  flag    variable   default      meaning\n" +
		"  -addr   SIM_ADDR   127.0.0.1:1  listen address\n" +
		"  -wait   SIM_WAIT   5ms          wait\n" +
		"  -share  SIM_SHARE  0            share\n"
	if out.String() != want {
		t.Errorf("usage:\n%q\nwant\n%q", out.String(), want)
	}
}
