// Command primus-server is a standalone Primus server with rooms: it runs
// with zero configuration on :8080 with an in-memory broker, and scales out
// over Redis with -redis-url (or Sentinel with -sentinel-addrs).
//
// Clients join rooms and publish with data messages; see the README for
// the command protocol, the HTTP API, /metrics and /healthz.
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serverapp.Main(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "primus-server:", err)
		os.Exit(1)
	}
}
