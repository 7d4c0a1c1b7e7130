// Command primus-server is a standalone Primus server with rooms: it runs
// with zero configuration on :8080 with an in-memory broker, and scales out
// over Redis with -redis-url (or Sentinel with -sentinel-addrs).
//
// Clients join rooms and publish with data messages; see the README for
// the command protocol, the HTTP API, access control, /metrics, /healthz
// and /readyz.
//
// SIGTERM or SIGINT starts a lame-duck shutdown (-lame-duck-delay,
// -lame-duck-duration); a second signal exits at once.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/primusgo/primus/internal/serverapp"
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		<-signals
		stop()
		<-signals
		fmt.Fprintln(os.Stderr, "primus-server: second signal, exiting now")
		os.Exit(1)
	}()
	if err := serverapp.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "primus-server:", err)
		os.Exit(1)
	}
}
