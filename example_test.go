package primus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// Authorize refuses upgrades before they become sparks: a missing token
// gets 401, a wrong one the status the error names.
func ExampleConfig_authorize() {
	srv, err := primus.New(primus.Config{
		Authorize: func(r *http.Request) error {
			switch r.URL.Query().Get("token") {
			case "":
				return errors.New("token required")
			case "s3cret":
				return nil
			}
			return &primus.AuthError{Status: http.StatusForbidden, Message: "not for you"}
		},
	})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Shutdown(context.Background())

	for _, token := range []string{"", "guess", "s3cret"} {
		conn, resp, err := websocket.Dial(context.Background(), hs.URL+"/primus?token="+token, nil)
		if err != nil {
			body, _ := io.ReadAll(resp.Body)
			fmt.Printf("%q: %d %s\n", token, resp.StatusCode, body)
			continue
		}
		fmt.Printf("%q: connected\n", token)
		conn.CloseNow()
	}
	// Output:
	// "": 401 {"error":"token required"}
	// "guess": 403 {"error":"not for you"}
	// "s3cret": connected
}

// Middleware serves Primus under its pathname and hands every other
// request to the application's own handler.
func ExampleServer_Middleware() {
	srv, err := primus.New(primus.Config{})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())
	app := http.NewServeMux()
	app.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello from the app") })
	hs := httptest.NewServer(srv.Middleware(app))
	defer hs.Close()

	for _, path := range []string{"/hello", "/primus/spec"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s: %s\n", path, body)
	}
	// Output:
	// /hello: hello from the app
	// /primus/spec: {"pingInterval":30000,"pathname":"/primus","version":"8.0.9","parser":"json","transformer":"websockets"}
}

// Two nodes of one cluster: a write on node A reaches a member of the room
// on node B. Here the nodes share a MemoryHub; with Redis each node gets
// its own redisbroker.New(redisbroker.Config{URL: ...}) instead (see the
// redisbroker package's example).
func Example_cluster() {
	hub := primus.NewMemoryHub()
	joined := make(chan struct{}, 1)
	var nodes []*primus.Server
	var urls []string
	for range 2 {
		srv, err := primus.New(primus.Config{
			Broker:       hub.NewBroker(),
			OnConnection: func(s *primus.Spark) { _ = s.Join("news") },
			OnJoin:       func(*primus.Spark, string) { joined <- struct{}{} },
		})
		if err != nil {
			panic(err)
		}
		hs := httptest.NewServer(srv)
		defer hs.Close()
		defer srv.Shutdown(context.Background())
		nodes, urls = append(nodes, srv), append(urls, hs.URL)
	}
	ctx := context.Background()
	conn, _, err := websocket.Dial(ctx, urls[1]+"/primus", nil) // a client of node B
	if err != nil {
		panic(err)
	}
	defer conn.CloseNow()
	<-joined // the client's spark joins as it connects
	if err := nodes[0].Room("news").Write("written on node A"); err != nil {
		panic(err)
	}
	_, msg, err := conn.Read(ctx)
	fmt.Println(string(msg), err)
	// Output: "written on node A" <nil>
}
