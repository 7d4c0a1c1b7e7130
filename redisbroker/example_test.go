package redisbroker_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/internal/redistest"
	"github.com/primusgo/primus/redisbroker"
)

// redisURL is where the example's Redis listens (TestExampleTwoServers
// points it at a Redis of its own and runs the example).
var redisURL = "redis://127.0.0.1:6380/0"

// Two servers on one Redis: a client of server B receives what server A
// writes to the room. Every node gets its own broker on the same Redis.
func Example_twoServers() {
	var servers []*primus.Server
	var urls []string
	joined := make(chan struct{}, 1)
	for range 2 {
		b, err := redisbroker.New(redisbroker.Config{URL: redisURL})
		if err != nil {
			panic(err)
		}
		srv, err := primus.New(primus.Config{
			Broker:       b, // started and closed by the server
			NodeID:       b.NodeID(),
			OnConnection: func(s *primus.Spark) { _ = s.Join("news") },
			OnJoin:       func(*primus.Spark, string) { joined <- struct{}{} },
		})
		if err != nil {
			panic(err)
		}
		defer srv.Shutdown(context.Background())
		hs := httptest.NewServer(srv) // in production: http.ListenAndServe(addr, srv)
		defer hs.Close()
		servers, urls = append(servers, srv), append(urls, hs.URL)
	}

	ctx := context.Background()
	conn, _, err := websocket.Dial(ctx, urls[1]+"/primus", nil) // a client of server B
	if err != nil {
		panic(err)
	}
	defer conn.CloseNow()
	<-joined
	// B subscribes the room's channel in the background: write until the
	// first write arrives (a fresh subscription takes a moment).
	got := make(chan string)
	go func() {
		_, msg, _ := conn.Read(ctx)
		got <- string(msg)
	}()
	for {
		if err := servers[0].Room("news").Write("from server A"); err != nil {
			panic(err)
		}
		select {
		case msg := <-got:
			fmt.Println("client of B got", msg)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	// It prints: client of B got "from server A"
	// (go test does not run it: it needs a Redis; TestExampleTwoServers does.)
}

// TestExampleTwoServers runs Example_twoServers against a real Redis and
// checks what it prints.
func TestExampleTwoServers(t *testing.T) {
	srv := redistest.StartServer(t)
	redisURL = srv.URL()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	Example_twoServers()
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if got := strings.TrimSpace(string(out)); got != `client of B got "from server A"` {
		t.Fatalf("example printed %q", got)
	}
}
