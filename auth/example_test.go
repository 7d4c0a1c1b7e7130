package auth_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/auth"
)

// A server that lets in clients with a token signed with a shared secret,
// and lets each join only the rooms its token grants.
func Example() {
	secret := []byte("a random secret of at least 32 bytes!!") // e.g. from -jwt-hmac-secret
	v, err := auth.New(auth.Config{HMACSecret: secret})
	if err != nil {
		panic(err)
	}
	var srv *primus.Server
	srv, err = primus.New(primus.Config{
		Authenticate: v.Authenticate, // refuses upgrades without a valid token
		OnConnection: func(s *primus.Spark) {
			claims := auth.ClaimsOf(s) // s.UserID() is claims.Subject
			// Clients send {"join": room} or {"to": room, "text": ...}.
			s.OnData(func(s *primus.Spark, d primus.Data) {
				var msg struct{ Join, To string }
				if d.Decode(&msg) != nil {
					return
				}
				switch {
				case msg.Join != "" && claims.CanJoin(msg.Join):
					_ = s.Join(msg.Join)
				case msg.To != "" && claims.CanPublish(msg.To):
					_ = srv.Room(msg.To).Write(d.JSON())
				}
			})
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/primus/", srv) // then http.ListenAndServe(addr, mux)

	// A token for a test user: it may join its own room and the chat
	// rooms, and publish to the chat rooms, for an hour. The client sends
	// it as ws://host/primus?token=<token> or Authorization: Bearer <token>.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":     "ann",
		"exp":     time.Now().Add(time.Hour).Unix(),
		"rooms":   []string{"user:{sub}", "chat:*"},
		"publish": []string{"chat:*"},
	}).SignedString(secret)
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(token)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.CanJoin("user:ann"), claims.CanJoin("user:bob"), claims.CanPublish("chat:lobby"))
	// Output: ann true false true
}
