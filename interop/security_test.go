package interop_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/primusgo/primus/internal/nodefixture"
	"github.com/primusgo/primus/internal/testcert"
)

// The real Primus 8.0.9 client connects to the standalone server over TLS
// (wss) with a token in its URL; the token's grants decide its joins and
// publishes. Without a token it cannot connect.
func TestTLSAndTokenWithPrimusClient(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	cert := testcert.New(t)
	secret := "0123456789abcdef0123456789abcdef"
	addr, log := freeAddr(t), &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", log)
		}
	})
	runMain(t, addr, log, "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile, "-jwt-hmac-secret", secret)
	trust := nodefixture.ClientOptions{Env: []string{"NODE_EXTRA_CA_CERTS=" + cert.CertFile}}

	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ann", "exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"news", "user:{sub}"}, "publish": []string{"news"},
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	c := startClient(t, "https://"+addr+"/?token="+tok, trust)
	awaitOpen(t, ctx, c)
	for _, step := range []struct{ send, want map[string]any }{
		{map[string]any{"join": []string{"news", "user:ann"}, "ack": 1}, map[string]any{"ack": 1, "ok": true}},
		{map[string]any{"join": "user:bob", "ack": 2}, map[string]any{"ack": 2, "error": `not allowed to join room "user:bob"`}},
		{map[string]any{"publish": map[string]any{"room": "news", "data": "over tls"}}, nil},
	} {
		if err := c.Write(step.send); err != nil {
			t.Fatal(err)
		}
		if step.want != nil {
			expectData(t, ctx, c, step.want)
		}
	}
	expectData(t, ctx, c, "over tls")

	anon := startClient(t, "https://"+addr, nodefixture.ClientOptions{Env: trust.Env, Strategy: "none"})
	if ev := await(t, ctx, anon, "error", "open"); !strings.Contains(string(ev.Raw), "401") {
		t.Errorf("tokenless client: %s, want a 401", ev.Raw)
	}
	await(t, ctx, anon, "end", "open")
}
