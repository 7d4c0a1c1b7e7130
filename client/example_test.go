package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/client"
	"github.com/primusgo/primus/internal/serverapp"
)

// Connect, join a room through the standalone server's command protocol and
// receive what is published to it.
func Example() {
	serverURL, stop := startServer() // a primus-server, in process
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A reconnect is a new session without room membership, so join in
	// OnOpen: it runs on the first connection and after every reconnect,
	// before anything queued while disconnected is sent.
	c, err := client.Dial(ctx, serverURL, client.Options{
		OnOpen: func(c *client.Client) {
			c.Write(map[string]any{"join": "news", "ack": 1})
		},
	})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()

	next := func() client.Message {
		select {
		case m := <-c.Messages():
			return m
		case <-ctx.Done():
			panic("no message")
		}
	}

	var ack struct {
		Ack int  `json:"ack"`
		OK  bool `json:"ok"`
	}
	if err := next().Decode(&ack); err != nil {
		fmt.Println("decode:", err)
		return
	}
	fmt.Printf("joined: ack %d ok %v\n", ack.Ack, ack.OK)

	// Any member's publish reaches every member, the sender included.
	c.Write(map[string]any{"publish": map[string]any{"room": "news", "data": map[string]string{"headline": "hello"}}})
	fmt.Println("news:", string(next().Data))

	id, err := c.ID(ctx)
	fmt.Println("spark id length:", len(id), err)

	// Output:
	// joined: ack 1 ok true
	// news: {"headline":"hello"}
	// spark id length: 21 <nil>
}

// The server closes the connection without ending the session (as a
// server being restarted or a lost network would): the client reconnects on
// its own. OnReconnect says that it will, OnOpen that it did; the new
// connection is a new session (a new spark). When the server ends the
// session on purpose, the client ends too.
func Example_reconnect() {
	sparks := make(chan *primus.Spark, 2)
	srv, err := primus.New(primus.Config{
		OnConnection: func(s *primus.Spark) { sparks <- s },
	})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	opens := make(chan int, 2)
	n := 0
	c, err := client.Dial(ctx, hs.URL, client.Options{
		// The first attempt waits exactly Min; later ones add jitter.
		Reconnect: client.ReconnectPolicy{Min: 10 * time.Millisecond},
		// Hooks run one at a time on the client's own goroutine.
		OnOpen: func(*client.Client) {
			n++
			opens <- n
		},
		OnClose: func(err error) {
			fmt.Println("connection closed; session ended:", errors.Is(err, client.ErrServerEnded))
		},
		OnReconnect: func(e client.ReconnectEvent) {
			fmt.Printf("reconnect attempt %d in %v\n", e.Attempt, e.Delay)
		},
	})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	fmt.Println("open", <-opens)
	first := <-sparks

	first.EndReconnect() // closes without "primus::server::close"
	fmt.Println("open", <-opens)
	second := <-sparks
	id, err := c.ID(ctx)
	fmt.Println("new spark:", id == second.ID() && id != first.ID(), err)

	second.End() // "primus::server::close": the client does not come back
	fmt.Println("client ended:", c.Wait(ctx))

	// Output:
	// open 1
	// connection closed; session ended: false
	// reconnect attempt 1 in 10ms
	// open 2
	// new spark: true <nil>
	// connection closed; session ended: true
	// client ended: primus client: session ended by the server
}

// Join a room that keeps history (the server's -history-size) with
// Recover: its messages carry their position, and after a reconnect the
// client rejoins the room from the last message it delivered; the server
// replays what it missed, and OnRecover says whether it could (false: the
// application must reload the room's state).
func Example_recover() {
	app, err := serverapp.New(serverapp.Options{HistorySize: 1000})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(app)
	defer ts.Close()
	defer app.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recovered := make(chan bool, 1)
	c, err := client.Dial(ctx, ts.URL, client.Options{
		Reconnect: client.ReconnectPolicy{Min: 50 * time.Millisecond},
		OnRecover: func(room string, ok bool) { recovered <- ok },
	})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	if err := c.Join(ctx, "prices", client.Recover()); err != nil {
		fmt.Println("join:", err)
		return
	}
	next := func() client.Message {
		select {
		case m := <-c.Messages():
			return m
		case <-ctx.Done():
			panic("no message")
		}
	}

	app.Primus.Room("prices").Write(map[string]int{"eur": 100})
	m := next()
	fmt.Println(m.Room, m.Offset, string(m.Data))

	// The connection drops (the server closes it without ending the
	// session) and the room gets a write meanwhile: it comes all the same,
	// once, replayed after the client reconnected and rejoined.
	id, _ := c.ID(ctx)
	app.Primus.Spark(id).EndReconnect()
	app.Primus.Room("prices").Write(map[string]int{"eur": 101})
	m = next()
	fmt.Println(m.Room, m.Offset, string(m.Data))
	fmt.Println("recovered:", <-recovered)

	// Output:
	// prices 1 {"eur":100}
	// prices 2 {"eur":101}
	// recovered: true
}

// startServer runs the standalone server's handler (internal/serverapp, the
// code behind cmd/primus-server) on a loopback port.
func startServer() (url string, stop func()) {
	app, err := serverapp.New(serverapp.Options{})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(app)
	return ts.URL, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		app.Shutdown(ctx)
		ts.Close()
	}
}
