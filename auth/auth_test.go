package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/auth"
)

// now is the verifiers' clock: tokens are judged against it, not the wall clock.
var now = time.Unix(1_900_000_000, 0)

func clock() time.Time { return now }

var secret = []byte("0123456789abcdef0123456789abcdef")

// keys are generated once: RSA generation is slow under -race.
type keySet struct {
	rsa, rsa2     *rsa.PrivateKey
	ec, ec2       *ecdsa.PrivateKey
	ed, ed2       ed25519.PrivateKey
	rsaPub        *rsa.PublicKey
	ecPub         *ecdsa.PublicKey
	edPub         ed25519.PublicKey
	rsaPEM, ecPEM []byte
	edPEM         []byte
}

var testKeys = sync.OnceValue(func() *keySet {
	k := &keySet{}
	var err error
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, k.ed2, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	k.rsaPub, k.ecPub, k.edPub = &k.rsa.PublicKey, &k.ec.PublicKey, k.ed.Public().(ed25519.PublicKey)
	k.rsaPEM, k.ecPEM, k.edPEM = pubPEM(k.rsaPub), pubPEM(k.ecPub), pubPEM(k.edPub)
	return k
})

func pubPEM(key crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims are valid claims for "ann", with extra ones set (nil deletes).
func claims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "ann", "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hs(t testing.TB, c jwt.Claims) string { return sign(t, jwt.SigningMethodHS256, secret, c) }

// rawToken builds a token by hand, for what jwt refuses to sign.
func rawToken(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

func newVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = clock
	}
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func hmacVerifier(t testing.TB) *auth.Verifier {
	return newVerifier(t, auth.Config{HMACSecret: secret})
}

// wantInvalid checks that err is ErrTokenInvalid (only) and says want.
func wantInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, auth.ErrTokenInvalid) || errors.Is(err, auth.ErrTokenExpired) || errors.Is(err, auth.ErrNoToken) {
		t.Fatalf("error %v, want ErrTokenInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		want string
	}{
		{"no key", auth.Config{}, "no key"},
		{"empty secret", auth.Config{HMACSecret: []byte{}}, "at least 32"},
		{"short secret", auth.Config{HMACSecret: []byte("password")}, "at least 32"},
		{"both", auth.Config{HMACSecret: secret, PublicKey: k.rsaPub}, "both"},
		{"small RSA", auth.Config{PublicKey: &small.PublicKey}, "1024 bits"},
		{"P-384", auth.Config{PublicKey: &p384.PublicKey}, "P-384"},
		{"private RSA", auth.Config{PublicKey: k.rsa}, "private key"},
		{"private Ed25519", auth.Config{PublicKey: k.ed}, "private key"},
		{"secret as key", auth.Config{PublicKey: secret}, "HMACSecret"},
		{"nil RSA", auth.Config{PublicKey: (*rsa.PublicKey)(nil)}, "nil RSA"},
		{"short Ed25519", auth.Config{PublicKey: ed25519.PublicKey{1, 2, 3}}, "3 bytes"},
		{"ECDSA by value", auth.Config{PublicKey: *k.ecPub}, "unsupported public key type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, %v; want an error saying %q", v, err, tc.want)
			}
		})
	}
}

func TestVerifyEachAlgorithm(t *testing.T) {
	k := testKeys()
	for _, tc := range []struct {
		alg    string
		cfg    auth.Config
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", auth.Config{HMACSecret: secret}, jwt.SigningMethodHS256, secret},
		{"RS256", auth.Config{PublicKey: k.rsaPub}, jwt.SigningMethodRS256, k.rsa},
		{"ES256", auth.Config{PublicKey: k.ecPub}, jwt.SigningMethodES256, k.ec},
		{"EdDSA", auth.Config{PublicKey: k.edPub}, jwt.SigningMethodEdDSA, k.ed},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			v := newVerifier(t, tc.cfg)
			if v.Algorithm() != tc.alg {
				t.Errorf("Algorithm %q", v.Algorithm())
			}
			tok := sign(t, tc.method, tc.key, claims(map[string]any{
				"rooms": []string{"user:{sub}", "chat:*"}, "publish": []string{"chat:*"},
				"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "jti": "t1",
			}))
			c, err := v.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "ann" || !c.ExpiresAt.Equal(now.Add(time.Hour)) || c.ID != "t1" ||
				!c.IssuedAt.Equal(now.Add(-time.Minute)) || !c.NotBefore.Equal(now.Add(-time.Minute)) {
				t.Errorf("claims %+v", c)
			}
			if len(c.Rooms) != 2 || c.Rooms[0] != "user:{sub}" || len(c.Publish) != 1 {
				t.Errorf("patterns %q %q", c.Rooms, c.Publish)
			}
			if !c.CanJoin("user:ann") || !c.CanJoin("chat:x") || c.CanJoin("user:bob") ||
				!c.CanPublish("chat:x", "chat:y") || c.CanPublish("user:ann") {
				t.Error("grants wrong")
			}
		})
	}
}

func TestVerifyTimes(t *testing.T) {
	v := hmacVerifier(t)
	for _, tc := range []struct {
		name    string
		extra   map[string]any
		expired bool
		want    string // "" accepts
	}{
		{"expired", map[string]any{"exp": now.Add(-time.Minute).Unix()}, true, ""},
		{"expires now", map[string]any{"exp": now.Unix()}, true, ""},
		{"expired within leeway", map[string]any{"exp": now.Add(-2 * time.Second).Unix()}, true, ""},
		{"expires in a second", map[string]any{"exp": now.Add(time.Second).Unix()}, false, ""},
		{"far expired", map[string]any{"exp": 1}, true, ""},
		{"nbf ahead", map[string]any{"nbf": now.Add(time.Minute).Unix()}, false, "not valid yet"},
		{"nbf within leeway", map[string]any{"nbf": now.Add(2 * time.Second).Unix()}, false, ""},
		{"iat ahead", map[string]any{"iat": now.Add(time.Minute).Unix()}, false, "issued in the future"},
		{"iat within leeway", map[string]any{"iat": now.Add(2 * time.Second).Unix()}, false, ""},
		{"fractional exp", map[string]any{"exp": float64(now.Unix()) + 1.5}, false, ""},
		{"fraction of a second left", map[string]any{"exp": float64(now.Unix()) + 0.5}, true, ""}, // jwt counts whole seconds
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(hs(t, claims(tc.extra)))
			switch {
			case tc.expired:
				if !errors.Is(err, auth.ErrTokenExpired) || errors.Is(err, auth.ErrTokenInvalid) || err.Error() != "auth: token expired" {
					t.Fatalf("error %v, want ErrTokenExpired", err)
				}
			case tc.want != "":
				wantInvalid(t, err, tc.want)
			case err != nil || c == nil:
				t.Fatalf("refused: %v", err)
			}
		})
	}

	// Without leeway, a token from a clock a second ahead is refused.
	strict := newVerifier(t, auth.Config{HMACSecret: secret, Leeway: -1})
	_, err := strict.Verify(hs(t, claims(map[string]any{"nbf": now.Add(time.Second).Unix()})))
	wantInvalid(t, err, "not valid yet")
	wide := newVerifier(t, auth.Config{HMACSecret: secret, Leeway: time.Hour})
	if _, err := wide.Verify(hs(t, claims(map[string]any{"iat": now.Add(30 * time.Minute).Unix()}))); err != nil {
		t.Fatalf("an hour's leeway: %v", err)
	}
	_, err = wide.Verify(hs(t, claims(map[string]any{"exp": now.Add(-time.Second).Unix()})))
	if !errors.Is(err, auth.ErrTokenExpired) {
		t.Fatalf("leeway extended exp: %v", err)
	}
}

func TestVerifyWrongKey(t *testing.T) {
	k := testKeys()
	for _, tc := range []struct {
		alg    string
		cfg    auth.Config
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", auth.Config{HMACSecret: secret}, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!")},
		{"RS256", auth.Config{PublicKey: k.rsaPub}, jwt.SigningMethodRS256, k.rsa2},
		{"ES256", auth.Config{PublicKey: k.ecPub}, jwt.SigningMethodES256, k.ec2},
		{"EdDSA", auth.Config{PublicKey: k.edPub}, jwt.SigningMethodEdDSA, k.ed2},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			_, err := newVerifier(t, tc.cfg).Verify(sign(t, tc.method, tc.key, claims(nil)))
			wantInvalid(t, err, "bad signature")
			if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				t.Errorf("%v does not wrap jwt's error", err)
			}
		})
	}

	// A valid token whose payload was changed.
	tok := hs(t, claims(nil))
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"root","exp":9999999999}`))
	_, err := hmacVerifier(t).Verify(strings.Join(parts, "."))
	wantInvalid(t, err, "bad signature")
}

func TestVerifyAlgNone(t *testing.T) {
	k := testKeys()
	payload, _ := json.Marshal(claims(map[string]any{"rooms": []string{"*"}}))
	unsafe, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []auth.Config{{HMACSecret: secret}, {PublicKey: k.rsaPub}, {PublicKey: k.ecPub}, {PublicKey: k.edPub}} {
		v := newVerifier(t, cfg)
		for _, tok := range []string{
			rawToken(`{"alg":"none","typ":"JWT"}`, string(payload), nil),
			rawToken(`{"alg":"none","typ":"JWT"}`, string(payload), []byte("sig")),
			unsafe,
		} {
			_, err := v.Verify(tok)
			wantInvalid(t, err, "algorithm none not accepted (want "+v.Algorithm()+")")
		}
		for _, alg := range []string{"None", "NONE", "", "HS1"} {
			_, err := v.Verify(rawToken(`{"alg":"`+alg+`","typ":"JWT"}`, string(payload), nil))
			wantInvalid(t, err, "unknown or missing algorithm")
		}
		_, err := v.Verify(rawToken(`{"typ":"JWT"}`, string(payload), nil))
		wantInvalid(t, err, "unknown or missing algorithm")
	}
}

func TestVerifyAlgorithmConfusion(t *testing.T) {
	k := testKeys()
	rsaDER, _ := x509.MarshalPKIXPublicKey(k.rsaPub)
	rsaV := newVerifier(t, auth.Config{PublicKey: k.rsaPub})
	// The classic attack: HMAC with the public key (PEM or DER) as the secret.
	for _, pubAsSecret := range [][]byte{k.rsaPEM, rsaDER} {
		_, err := rsaV.Verify(sign(t, jwt.SigningMethodHS256, pubAsSecret, claims(nil)))
		wantInvalid(t, err, "algorithm HS256 not accepted (want RS256)")
	}
	// Another RSA algorithm with the right key.
	_, err := rsaV.Verify(sign(t, jwt.SigningMethodPS256, k.rsa, claims(nil)))
	wantInvalid(t, err, "algorithm PS256 not accepted (want RS256)")
	_, err = rsaV.Verify(sign(t, jwt.SigningMethodRS512, k.rsa, claims(nil)))
	wantInvalid(t, err, "algorithm RS512 not accepted")

	edV := newVerifier(t, auth.Config{PublicKey: k.edPub})
	_, err = edV.Verify(sign(t, jwt.SigningMethodHS256, []byte(k.edPub), claims(nil)))
	wantInvalid(t, err, "algorithm HS256 not accepted (want EdDSA)")
	ecV := newVerifier(t, auth.Config{PublicKey: k.ecPub})
	_, err = ecV.Verify(sign(t, jwt.SigningMethodHS256, k.ecPEM, claims(nil)))
	wantInvalid(t, err, "algorithm HS256 not accepted (want ES256)")

	// An HMAC verifier takes no asymmetric token, nor HS512 with its own secret.
	hv := hmacVerifier(t)
	_, err = hv.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil)))
	wantInvalid(t, err, "algorithm RS256 not accepted (want HS256)")
	_, err = hv.Verify(sign(t, jwt.SigningMethodHS512, secret, claims(nil)))
	wantInvalid(t, err, "algorithm HS512 not accepted")
}

func TestVerifyClaims(t *testing.T) {
	v := hmacVerifier(t)
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string // "" accepts
	}{
		{"no exp", map[string]any{"exp": nil}, "missing exp claim"},
		{"no sub", map[string]any{"sub": nil}, "missing sub claim"},
		{"empty sub", map[string]any{"sub": ""}, "missing sub claim"},
		{"numeric sub", map[string]any{"sub": 42}, "sub claim has the wrong type"},
		{"string exp", map[string]any{"exp": "tomorrow"}, "exp claim has the wrong type"},
		{"numeric string exp", map[string]any{"exp": "9999999999"}, "exp claim has the wrong type"},
		{"numeric string nbf", map[string]any{"nbf": "1"}, "nbf claim has the wrong type"},
		{"object iss", map[string]any{"iss": map[string]any{}}, "iss claim has the wrong type"},
		{"string rooms", map[string]any{"rooms": "chat:*"}, "rooms claim must be an array of strings"},
		{"number in rooms", map[string]any{"rooms": []any{"a", 1}}, "rooms claim must be an array of strings"},
		{"null in rooms", map[string]any{"rooms": []any{"a", nil}}, "rooms claim must be an array of strings"},
		{"object rooms", map[string]any{"rooms": map[string]any{"a": true}}, "rooms claim must be an array of strings"},
		{"bool publish", map[string]any{"publish": true}, "publish claim must be an array of strings"},
		{"nested publish", map[string]any{"publish": []any{[]any{"a"}}}, "publish claim must be an array of strings"},
		{"null rooms", map[string]any{"rooms": json.RawMessage("null")}, ""},
		{"empty rooms", map[string]any{"rooms": []string{}}, ""},
		{"unknown claims", map[string]any{"name": "Ann", "admin": true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(hs(t, claims(tc.extra)))
			if tc.want != "" {
				wantInvalid(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.CanJoin("a") || c.CanPublish("a") {
				t.Error("no rooms claim granted a room")
			}
		})
	}
}

func TestVerifyMalformed(t *testing.T) {
	v := hmacVerifier(t)
	good := hs(t, claims(nil))
	for _, tok := range []string{
		"x", "a.b", "a.b.c.d", "..", good + ".", "!!!.!!!.!!!",
		rawToken(`{"alg":"HS256"`, `{}`, nil),
		rawToken(`{"alg":"HS256"}`, `[]`, nil),
		rawToken(`{"alg":"HS256"}`, `not json`, nil),
	} {
		_, err := v.Verify(tok)
		wantInvalid(t, err, "malformed token")
	}
	if _, err := v.Verify(""); !errors.Is(err, auth.ErrNoToken) {
		t.Fatalf("empty token: %v", err)
	}
	// A critical header extension this package does not know.
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	crit.Header["crit"] = []string{"exp"}
	critTok, err := crit.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(critTok)
	wantInvalid(t, err, "unsupported crit header")
}

func TestVerifyLimits(t *testing.T) {
	v := hmacVerifier(t)
	long := hs(t, claims(map[string]any{"pad": strings.Repeat("x", auth.MaxTokenLength)}))
	_, err := v.Verify(long)
	wantInvalid(t, err, "token longer than 16384 bytes")
	// Refused before parsing: even garbage of that length says so.
	_, err = v.Verify(strings.Repeat(".", auth.MaxTokenLength+1))
	wantInvalid(t, err, "token longer than")

	many := make([]string, auth.MaxPatterns+1)
	for i := range many {
		many[i] = "r"
	}
	_, err = v.Verify(hs(t, claims(map[string]any{"publish": many})))
	wantInvalid(t, err, "publish claim has 1001 patterns (at most 1000)")
	if _, err := v.Verify(hs(t, claims(map[string]any{"rooms": many[:auth.MaxPatterns]}))); err != nil {
		t.Fatalf("%d patterns: %v", auth.MaxPatterns, err)
	}

	_, err = v.Verify(hs(t, claims(map[string]any{"rooms": []string{strings.Repeat("a", auth.MaxPatternLength+1)}})))
	wantInvalid(t, err, "rooms claim has a pattern of 1025 bytes (at most 1024)")
	c, err := v.Verify(hs(t, claims(map[string]any{"rooms": []string{strings.Repeat("a", auth.MaxPatternLength)}})))
	if err != nil || !c.CanJoin(strings.Repeat("a", auth.MaxPatternLength)) {
		t.Fatalf("longest pattern: %v", err)
	}
	// The limit holds after {sub} is substituted: the placeholder cannot
	// multiply the subject into megabytes.
	_, err = v.Verify(hs(t, claims(map[string]any{
		"sub": strings.Repeat("s", 500), "rooms": []string{"{sub}{sub}{sub}"},
	})))
	wantInvalid(t, err, "rooms claim has a pattern of 1500 bytes")
}

func TestVerifyIssuerAudience(t *testing.T) {
	v := newVerifier(t, auth.Config{HMACSecret: secret, Issuer: "https://id.example", Audience: "chat"})
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"match", map[string]any{"iss": "https://id.example", "aud": "chat"}, ""},
		{"aud among others", map[string]any{"iss": "https://id.example", "aud": []string{"x", "chat"}}, ""},
		{"wrong issuer", map[string]any{"iss": "https://evil.example", "aud": "chat"}, "wrong issuer"},
		{"wrong audience", map[string]any{"iss": "https://id.example", "aud": []string{"x"}}, "wrong audience"},
		{"no issuer", map[string]any{"aud": "chat"}, "missing iss claim"},
		{"no audience", map[string]any{"iss": "https://id.example"}, "missing aud claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(hs(t, claims(tc.extra)))
			if tc.want != "" {
				wantInvalid(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Issuer != "https://id.example" || len(c.Audience) == 0 {
				t.Errorf("claims %+v", c)
			}
		})
	}
	// Unconfigured, iss and aud are not checked.
	if _, err := hmacVerifier(t).Verify(hs(t, claims(map[string]any{"iss": "anyone", "aud": "any"}))); err != nil {
		t.Fatal(err)
	}
}

func TestPatterns(t *testing.T) {
	v := hmacVerifier(t)
	grant := func(sub string, patterns ...string) *auth.Claims {
		t.Helper()
		c, err := v.Verify(hs(t, claims(map[string]any{"sub": sub, "rooms": patterns, "publish": patterns})))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		sub      string
		patterns []string
		yes, no  []string
	}{
		{"ann", []string{"user:{sub}"}, []string{"user:ann"}, []string{"user:bob", "user:ann2", "user:", "user:{sub}", "xuser:ann"}},
		{"*", []string{"user:{sub}"}, []string{"user:*"}, []string{"user:ann", "user:", "user:**"}},
		{"*", []string{"{sub}"}, []string{"*"}, []string{"a", ""}},
		{"a*b", []string{"u:{sub}:*"}, []string{"u:a*b:", "u:a*b:x"}, []string{"u:axb:x", "u:ab:x"}},
		{"{sub}", []string{"u:{sub}"}, []string{"u:{sub}"}, []string{"u:{sub}{sub}"}},
		{"?[x]", []string{"u:{sub}"}, []string{"u:?[x]"}, []string{"u:a[x]", "u:x"}},
		{`a\`, []string{"u:{sub}*"}, []string{`u:a\`, `u:a\*`}, []string{"u:a"}},
		{"ann", []string{"chat:*"}, []string{"chat:", "chat:x", "chat:a:b"}, []string{"chat", "xchat:a", "Chat:a"}},
		{"ann", []string{"*"}, []string{"a", "user:bob", "☃"}, []string{""}},
		{"ann", []string{"**"}, []string{"a"}, []string{""}},
		{"ann", []string{""}, nil, []string{"", "a"}},
		{"ann", []string{"*:end"}, []string{":end", "a:end", "a:end:end"}, []string{"a:end:", "end"}},
		{"ann", []string{"a*b*c"}, []string{"abc", "aXbYc", "abbc", "a*b*c", "acbc"}, []string{"ab", "acb", "abcx"}},
		{"ann", []string{"a*a"}, []string{"aa", "aba"}, []string{"a"}},
		{"ann", []string{"*{sub}*"}, []string{"ann", "xannx", "annann"}, []string{"an", "a*n"}},
		{"ann", []string{"room.[0-9]+"}, []string{"room.[0-9]+"}, []string{"room.1", "room.x"}},
		{"ann", []string{"{SUB}", "{sub"}, []string{"{SUB}", "{sub"}, []string{"ann"}},
		{"ünï", []string{"пользователь:{sub}", "日本*"}, []string{"пользователь:ünï", "日本", "日本語"}, []string{"пользователь:uni", "日"}},
		{"ann", []string{"x", "y:*"}, []string{"x", "y:1"}, []string{"y", "z"}},
		{"ann", nil, nil, []string{"a", ""}},
	} {
		c := grant(tc.sub, tc.patterns...)
		for _, room := range tc.yes {
			if !c.CanJoin(room) || !c.CanPublish(room) {
				t.Errorf("sub %q patterns %q: %q not granted", tc.sub, tc.patterns, room)
			}
		}
		for _, room := range tc.no {
			if c.CanJoin(room) || c.CanPublish(room) {
				t.Errorf("sub %q patterns %q: %q granted", tc.sub, tc.patterns, room)
			}
		}
	}

	c, err := v.Verify(hs(t, claims(map[string]any{"rooms": []string{"r:*"}, "publish": []string{"p:*", "user:{sub}"}})))
	if err != nil {
		t.Fatal(err)
	}
	if c.CanPublish() {
		t.Error("CanPublish of no rooms")
	}
	if !c.CanPublish("p:1", "user:ann", "p:2") || c.CanPublish("p:1", "r:1") || c.CanPublish("r:1") {
		t.Error("CanPublish needs every room granted by publish")
	}
	if c.CanJoin("p:1") || !c.CanJoin("r:1") {
		t.Error("CanJoin answers from rooms only")
	}
	var none *auth.Claims
	if none.CanJoin("a") || none.CanPublish("a") {
		t.Error("nil Claims granted")
	}
}

// A pathological pattern against a long room name stays fast: no backtracking.
func TestPatternsPathological(t *testing.T) {
	v := hmacVerifier(t)
	pattern := strings.Repeat("*a", 500) + "*b" // 1002 bytes
	patterns := make([]string, 10)              // about as many as fit in a token
	for i := range patterns {
		patterns[i] = pattern
	}
	c, err := v.Verify(hs(t, claims(map[string]any{"rooms": patterns})))
	if err != nil {
		t.Fatal(err)
	}
	room := strings.Repeat("a", 1000)
	start := time.Now()
	for range 100 {
		if c.CanJoin(room) {
			t.Fatal("granted")
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("100 checks took %v", d)
	}
	if !c.CanJoin(strings.Repeat("a", 500) + "b") {
		t.Fatal("not granted")
	}
}

func TestAuthenticate(t *testing.T) {
	v := hmacVerifier(t)
	tok := hs(t, claims(map[string]any{"rooms": []string{"user:{sub}"}}))
	other := hs(t, claims(map[string]any{"sub": "bob"}))
	req := func(target string, authz ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		for _, a := range authz {
			r.Header.Add("Authorization", a)
		}
		return r
	}
	for name, r := range map[string]*http.Request{
		"query":               req("/primus?token=" + tok),
		"header":              req("/primus", "Bearer "+tok),
		"lowercase scheme":    req("/primus", "bearer  "+tok),
		"both, same token":    req("/primus?token="+tok, "Bearer "+tok),
		"other scheme beside": req("/primus?token="+tok, "Basic dXNlcjpwdw=="),
		"empty query param":   req("/primus?token=", "Bearer "+tok),
	} {
		t.Run(name, func(t *testing.T) {
			id, err := v.Authenticate(r)
			if err != nil {
				t.Fatal(err)
			}
			c, ok := id.Claims.(*auth.Claims)
			if id.UserID != "ann" || !id.Expires.Equal(now.Add(time.Hour)) || !ok || !c.CanJoin("user:ann") {
				t.Fatalf("identity %+v", id)
			}
		})
	}

	for _, tc := range []struct {
		name      string
		r         *http.Request
		status    int
		message   string
		challenge string
	}{
		{"no token", req("/primus"), 401,
			"missing token: send ?token=<jwt> or Authorization: Bearer <jwt>", `Bearer realm="primus"`},
		{"basic only", req("/primus", "Basic dXNlcjpwdw=="), 401,
			"missing token: send ?token=<jwt> or Authorization: Bearer <jwt>", `Bearer realm="primus"`},
		{"two tokens", req("/primus?token="+tok, "Bearer "+other), 400,
			"more than one token in the request", `Bearer realm="primus", error="invalid_request", error_description="more than one token in the request"`},
		{"two query tokens", req("/primus?token=" + tok + "&token=" + other), 400,
			"more than one token in the request", `Bearer realm="primus", error="invalid_request", error_description="more than one token in the request"`},
		{"two headers", req("/primus", "Bearer "+tok, "Bearer "+other), 400,
			"more than one token in the request", `Bearer realm="primus", error="invalid_request", error_description="more than one token in the request"`},
		{"expired", req("/primus?token=" + hs(t, claims(map[string]any{"exp": now.Add(-time.Second).Unix()}))), 401,
			"token expired", `Bearer realm="primus", error="invalid_token", error_description="token expired"`},
		{"bad signature", req("/primus?token=" + sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!"), claims(nil))), 401,
			"invalid token: bad signature", `Bearer realm="primus", error="invalid_token", error_description="bad signature"`},
		{"missing sub", req("/primus", "Bearer "+hs(t, claims(map[string]any{"sub": nil}))), 401,
			"invalid token: missing sub claim", `Bearer realm="primus", error="invalid_token", error_description="missing sub claim"`},
		{"garbage", req("/primus?token=%22%5C%0A"), 401,
			"invalid token: malformed token", `Bearer realm="primus", error="invalid_token", error_description="malformed token"`},
		{"alg from the token", req("/primus?token=" + rawToken(`{"alg":"\"\\x"}`, `{"sub":"a","exp":9999999999}`, nil)), 401,
			"invalid token: unknown or missing algorithm (want HS256)", `Bearer realm="primus", error="invalid_token", error_description="unknown or missing algorithm (want HS256)"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Authenticate(tc.r)
			var ae *primus.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Authenticate: %v, %v; want an *AuthError", id, err)
			}
			if id != nil || ae.Status != tc.status || ae.Message != tc.message || ae.Authenticate != tc.challenge {
				t.Fatalf("got %d %q %q\nwant %d %q %q", ae.Status, ae.Message, ae.Authenticate, tc.status, tc.message, tc.challenge)
			}
		})
	}

	// Another query parameter.
	av := newVerifier(t, auth.Config{HMACSecret: secret, QueryParam: "access_token"})
	if _, err := av.Authenticate(req("/primus?access_token=" + tok)); err != nil {
		t.Fatal(err)
	}
	_, err := av.Authenticate(req("/primus?token=" + tok))
	var ae *primus.AuthError
	if !errors.As(err, &ae) || ae.Message != "missing token: send ?access_token=<jwt> or Authorization: Bearer <jwt>" {
		t.Fatalf("token in the wrong parameter: %v", err)
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	k := testKeys()
	certDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: bigOne()},
		&x509.Certificate{SerialNumber: bigOne()}, k.edPub, k.ed)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k.rsaPub)})
	for name, tc := range map[string]struct {
		pem []byte
		alg string
	}{
		"RSA":         {k.rsaPEM, "RS256"},
		"RSA PKCS#1":  {pkcs1, "RS256"},
		"ECDSA":       {k.ecPEM, "ES256"},
		"Ed25519":     {k.edPEM, "EdDSA"},
		"certificate": {certPEM, "EdDSA"},
		"after text":  {append([]byte("# the issuer's key\n"), k.ecPEM...), "ES256"},
	} {
		t.Run(name, func(t *testing.T) {
			key, err := auth.ParsePublicKeyPEM(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			v := newVerifier(t, auth.Config{PublicKey: key})
			if v.Algorithm() != tc.alg {
				t.Fatalf("algorithm %s, want %s", v.Algorithm(), tc.alg)
			}
		})
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPriv, _ := x509.MarshalPKCS8PrivateKey(k.ed)
	ecPriv, _ := x509.MarshalECPrivateKey(k.ec)
	for name, tc := range map[string]struct {
		pem  []byte
		want string
	}{
		"empty":       {nil, "no PEM block"},
		"not PEM":     {[]byte("ssh-ed25519 AAAA..."), "no PEM block"},
		"PKCS#8":      {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edPriv}), "PRIVATE KEY; give the public key"},
		"EC private":  {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecPriv}), "EC PRIVATE KEY; give the public key"},
		"P-384":       {pubPEM(&p384.PublicKey), "P-384"},
		"other block": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}}), `"CERTIFICATE REQUEST" is not a public key`},
		"bad DER":     {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), "parsing PUBLIC KEY"},
	} {
		t.Run(name, func(t *testing.T) {
			key, err := auth.ParsePublicKeyPEM(tc.pem)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, %v; want an error saying %q", key, err, tc.want)
			}
		})
	}
}

func TestClaimsOfNil(t *testing.T) {
	if auth.ClaimsOf(nil) != nil {
		t.Fatal("ClaimsOf(nil)")
	}
}

func FuzzVerify(f *testing.F) {
	k := testKeys()
	f.Add(hs(f, claims(map[string]any{"rooms": []string{"user:{sub}", "*"}})))
	f.Add(sign(f, jwt.SigningMethodEdDSA, k.ed, claims(nil)))
	f.Add(rawToken(`{"alg":"none"}`, `{"sub":"a","exp":1e300}`, nil))
	f.Add(rawToken(`{"alg":"HS256"}`, `{"sub":"a","exp":-1e300,"rooms":[{}]}`, nil))
	f.Add("a.b.c")
	hv := hmacVerifier(f)
	ev := newVerifier(f, auth.Config{PublicKey: k.edPub})
	f.Fuzz(func(t *testing.T, tok string) {
		for _, v := range []*auth.Verifier{hv, ev} {
			c, err := v.Verify(tok)
			if err != nil {
				if !errors.Is(err, auth.ErrTokenInvalid) && !errors.Is(err, auth.ErrTokenExpired) && !errors.Is(err, auth.ErrNoToken) {
					t.Fatalf("unclassified error %v", err)
				}
				continue
			}
			if c.Subject == "" || !c.ExpiresAt.After(now) {
				t.Fatalf("accepted claims %+v", c)
			}
			c.CanJoin(tok)
			c.CanPublish(tok, "x")
		}
	})
}

func bigOne() *big.Int { return big.NewInt(1) }
