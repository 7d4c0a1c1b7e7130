// Command primus-bench is the load generator and the Node/Centrifuge/Go
// comparison of BENCHMARKS.md: "run" drives N clients and a publisher against running
// servers, "idle" measures memory per idle connection, "compare" starts
// Redis and two nodes of each stack and runs the scenarios S1-S5.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/primusgo/primus/bench/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
