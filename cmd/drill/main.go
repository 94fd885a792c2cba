// Command drill is the fault drill of the BFF: it runs two bff instances
// on a private database and a private redis-server, drives a concurrent
// keyed workload with readers and event subscribers, injects faults on a
// schedule (Redis killed and restarted empty, Redis paused, an instance
// killed, Postgres cut off), and checks the recorded history for stale
// reads, lost, duplicated or reordered events, double effects, bad
// timelines, leaks and INTERNAL errors.
//
//	drill [-short] [-bff bin/bff] [-paysim bin/paysim] [-dir DIR]
//	drill -partition [-ttl 5s] [-rounds 2] [-bff bin/bff] [-dir DIR]
//
// DRILL_SHORT=1 is -short. DATABASE_URL names the Postgres in which the
// drill creates (and drops) its database. The last line of the output is
//
//	stale=N lost=N multi=N version=N dup=N order=N gap=N leak=N internal=N
//
// and the exit status is 1 when any count is not 0 or the run exercised too
// little (no successful write, a subscriber that received nothing).
//
// With -partition it measures instead the staleness bound of a writer cut
// off from Redis (drill.Partition): instance A reaches Redis through a TCP
// proxy that is cut (connections refused, then blackholed) while a
// mutation goes through A and B's readers read the order's screens. Its
// last line is
//
//	partition: rounds=N reads=N stale=N max_staleness=Xs bound=Ys over_bound=N writer_stale=N
//
// and the exit status is 1 when a read broke the bound (CACHE_TTL·1.1 after
// A's answer, plus the read's own duration), the writer served an old
// screen, or the run exercised too little.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shop/bff/internal/drill"
)

func main() {
	short := flag.Bool("short", os.Getenv("DRILL_SHORT") == "1", "the short schedule (under a minute); also DRILL_SHORT=1")
	bff := flag.String("bff", "bin/bff", "the bff binary")
	paysim := flag.String("paysim", "bin/paysim", "the payment simulator binary")
	dir := flag.String("dir", filepath.Join("bin", "drill-logs", time.Now().UTC().Format("20060102-150405")), "directory of the processes' logs")
	partition := flag.Bool("partition", false, "measure the staleness bound of a writer cut off from Redis instead")
	ttl := flag.Duration("ttl", 5*time.Second, "-partition: CACHE_TTL of the instances")
	rounds := flag.Int("rounds", 2, "-partition: rounds per way of cutting (refused, blackholed)")
	flag.Parse()
	dbURL := os.Getenv("DATABASE_URL")
	if dbURL == "" {
		dbURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *partition {
		res, err := drill.Partition(ctx, drill.PartitionOptions{BFF: *bff, DatabaseURL: dbURL, Dir: *dir, Out: os.Stdout, TTL: *ttl, Rounds: *rounds})
		if err != nil {
			fmt.Fprintln(os.Stderr, "drill -partition:", err)
			os.Exit(2)
		}
		fmt.Println(res.String())
		if res.Failed() {
			os.Exit(1)
		}
		return
	}
	res, err := drill.Run(ctx, drill.Options{Short: *short, BFF: *bff, Paysim: *paysim, DatabaseURL: dbURL, Dir: *dir, Out: os.Stdout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "drill:", err)
		os.Exit(2)
	}
	fmt.Println(res.Counts.String())
	if res.Counts.Violations() > 0 || len(res.Problems) > 0 {
		os.Exit(1)
	}
}
