package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // the serve command's -pprof listener
	"os"
	"runtime/pprof"

	"github.com/primusgo/primus/internal/serverapp"
)

// cmdServe runs the standalone server (the same code as cmd/primus-server)
// with profiling: a CPU profile written on shutdown and/or the net/http/pprof
// handlers on their own address. The comparison uses it with -profile.
func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	addr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: primus-bench serve [-cpuprofile file] [-pprof addr] -- <primus-server flags>")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr != "" {
		go func() { _ = http.ListenAndServe(*addr, nil) }()
	}
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return serverapp.Main(ctx, fs.Args(), os.Getenv, io.Discard, stderr, nil)
}
