package primus_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/coder/websocket"

	"github.com/primusgo/primus"
)

// A server whose sparks join the room "news" as they connect; a
// WebSocket client receives a room write, then the server ends it.
func Example() {
	sparks := make(chan *primus.Spark, 1)
	srv, err := primus.New(primus.Config{
		OnConnection: func(s *primus.Spark) {
			_ = s.Join("news")
			sparks <- s
		},
		OnJoin: func(s *primus.Spark, room string) {
			fmt.Printf("%s joined %s\n", s.Query().Get("name"), room)
		},
	})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv) // serves every path under /primus
	defer hs.Close()
	defer srv.Shutdown(context.Background())

	ctx := context.Background()
	conn, _, err := websocket.Dial(ctx, hs.URL+"/primus?name=alice", &websocket.DialOptions{
		HTTPClient:      hs.Client(),
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		panic(err)
	}
	defer conn.CloseNow()
	spark := <-sparks

	fmt.Println("rooms:", srv.Rooms(), "members:", len(srv.Clients("news")))
	if err := srv.Room("news").Write(map[string]any{"headline": "hello", "n": 1}); err != nil {
		panic(err)
	}
	_, msg, _ := conn.Read(ctx)
	fmt.Println("client got:", string(msg))

	spark.End() // intentional: the client is told not to reconnect
	_, msg, _ = conn.Read(ctx)
	fmt.Println("client got:", string(msg))
	_, _, err = conn.Read(ctx)
	fmt.Println("close status:", websocket.CloseStatus(err))

	// Output:
	// alice joined news
	// rooms: [news] members: 1
	// client got: {"headline":"hello","n":1}
	// client got: "primus::server::close"
	// close status: StatusNoStatusRcvd
}
