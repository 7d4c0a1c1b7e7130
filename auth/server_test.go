package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/auth"
)

// ClaimsOf on a spark of a real server that a client joined with ?token=.
func TestClaimsOfSpark(t *testing.T) {
	v := newVerifier(t, auth.Config{HMACSecret: secret, Now: time.Now})
	sparks := make(chan *primus.Spark, 1)
	srv, err := primus.New(primus.Config{
		Authenticate: v.Authenticate,
		OnConnection: func(s *primus.Spark) { sparks <- s },
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	token := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
		"sub": "ann", "exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"user:{sub}", "chat:*"},
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, hs.URL+"/primus?token="+token, &websocket.DialOptions{HTTPClient: hs.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	var s *primus.Spark
	select {
	case s = <-sparks:
	case <-ctx.Done():
		t.Fatal("no spark")
	}
	c := auth.ClaimsOf(s)
	if s.UserID() != "ann" || c == nil || !c.CanJoin("user:ann") || !c.CanJoin("chat:x") || c.CanJoin("user:bob") {
		t.Fatalf("spark user %q claims %+v", s.UserID(), c)
	}

	// Without a token, the upgrade is refused.
	_, resp, err := websocket.Dial(ctx, hs.URL+"/primus", &websocket.DialOptions{HTTPClient: hs.Client()})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized ||
		resp.Header.Get("WWW-Authenticate") != `Bearer realm="primus"` {
		t.Fatalf("tokenless dial: %v %v", resp, err)
	}
}
