package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

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
