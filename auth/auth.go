package auth

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/primusgo/primus"
)

// Limits on what a token may carry. They bound the work an upgrade costs:
// a longer token is refused before it is decoded, and grants stay cheap to
// check.
const (
	// MaxTokenLength is the longest token accepted, in bytes.
	MaxTokenLength = 16 << 10
	// MaxPatterns is the most patterns accepted in each of rooms and publish.
	MaxPatterns = 1000
	// MaxPatternLength is the longest pattern accepted, in bytes, after
	// "{sub}" is substituted.
	MaxPatternLength = 1024
)

// DefaultLeeway is the clock skew Config.Leeway allows when it is 0.
const DefaultLeeway = 5 * time.Second

var (
	// ErrNoToken: the request carries no token.
	ErrNoToken = errors.New("auth: no token")
	// ErrTokenExpired: the token was valid but its exp has passed. It is
	// not also ErrTokenInvalid: a client may fetch a fresh token and retry.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrTokenInvalid: the token is malformed, badly signed, signed with an
	// algorithm the key does not accept, not yet valid, or lacks or has
	// malformed claims. The error's text says which, and it wraps the
	// jwt package's error where there is one.
	ErrTokenInvalid = errors.New("auth: invalid token")
)

// Config configures a Verifier. Exactly one of HMACSecret and PublicKey
// must be set.
type Config struct {
	// HMACSecret verifies HS256 tokens. It must be at least 32 bytes
	// (RFC 7518: a key as long as the hash).
	HMACSecret []byte
	// PublicKey verifies tokens signed with its private key: an
	// *rsa.PublicKey of at least 2048 bits (RS256), an *ecdsa.PublicKey on
	// P-256 (ES256) or an ed25519.PublicKey (EdDSA). ParsePublicKeyPEM
	// reads one from a PEM file.
	PublicKey crypto.PublicKey
	// QueryParam is the upgrade URL's query parameter that carries the
	// token (default "token").
	QueryParam string
	// Leeway is the clock skew between token issuers and this server that
	// is forgiven for nbf and iat, so that a fresh token from an issuer
	// whose clock runs ahead is not refused (default DefaultLeeway;
	// negative: none). exp gets no leeway: a token is expired, and its
	// spark ended, exactly when exp says.
	Leeway time.Duration
	// Issuer, when set, is the iss a token must have.
	Issuer string
	// Audience, when set, must be one of a token's aud values.
	Audience string
	// Now tells the time (default time.Now); for tests.
	Now func() time.Time
}

// Verifier verifies tokens with one key. It is safe for concurrent use.
type Verifier struct {
	key    any               // what the jwt signing method verifies with
	method jwt.SigningMethod // the one algorithm key accepts
	param  string
	now    func() time.Time
	parser *jwt.Parser
	// issuer and audience are the required iss and aud ("" when not checked).
	issuer, audience string
}

// New returns a Verifier for cfg, or an error saying what is wrong with
// its key.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{param: cfg.QueryParam, now: cfg.Now, issuer: cfg.Issuer, audience: cfg.Audience}
	if v.param == "" {
		v.param = "token"
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case cfg.HMACSecret != nil && cfg.PublicKey != nil:
		return nil, errors.New("auth: both HMACSecret and PublicKey are set; configure one key")
	case cfg.HMACSecret != nil:
		if len(cfg.HMACSecret) < 32 {
			return nil, fmt.Errorf("auth: HMACSecret is %d bytes; HS256 needs at least 32 (random bytes, not a password)", len(cfg.HMACSecret))
		}
		v.key = append([]byte(nil), cfg.HMACSecret...) // the caller may reuse its slice
		v.method = jwt.SigningMethodHS256
	case cfg.PublicKey != nil:
		m, err := methodFor(cfg.PublicKey)
		if err != nil {
			return nil, err
		}
		v.key, v.method = cfg.PublicKey, m
	default:
		return nil, errors.New("auth: no key: set HMACSecret or PublicKey")
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.method.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(max(leeway, 0)),
		jwt.WithTimeFunc(v.now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Algorithm returns the one algorithm the Verifier accepts: "HS256",
// "RS256", "ES256" or "EdDSA".
func (v *Verifier) Algorithm() string { return v.method.Alg() }

// wireClaims is a token's payload as decoded. rooms and publish stay raw
// until the signature is checked, so that their errors are only reported
// for tokens from the issuer.
type wireClaims struct {
	jwt.RegisteredClaims
	Rooms   json.RawMessage `json:"rooms"`
	Publish json.RawMessage `json:"publish"`
}

// Verify checks token (its signature, algorithm, times, issuer and
// audience, and claims) and returns its claims. Errors match ErrNoToken,
// ErrTokenExpired or ErrTokenInvalid with errors.Is.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > MaxTokenLength {
		return nil, invalid(nil, fmt.Sprintf("token longer than %d bytes", MaxTokenLength))
	}
	var wc wireClaims
	tok, err := v.parser.ParseWithClaims(token, &wc, func(t *jwt.Token) (any, error) {
		if t.Method != v.method { // WithValidMethods checked this; belt and braces
			return nil, errors.New("unexpected signing method")
		}
		return v.key, nil
	})
	if err != nil {
		return nil, v.classify(tok, &wc, err)
	}
	// RFC 7515: a critical header extension not understood makes the token invalid.
	if _, ok := tok.Header["crit"]; ok {
		return nil, invalid(nil, "unsupported crit header")
	}
	// The jwt package takes a date written as a string ("exp":"1795..."),
	// which RFC 7519 does not: a NumericDate is a number.
	if claim := wrongTypeClaim(tok); claim != "" {
		return nil, invalid(nil, claim+" claim has the wrong type")
	}
	exp := wc.ExpiresAt.Time // present: WithExpirationRequired
	if !v.now().Before(exp) {
		return nil, expired(nil) // within the leeway the parser gave exp
	}
	if wc.Subject == "" {
		return nil, invalid(nil, "missing sub claim")
	}
	c := &Claims{
		Subject:   wc.Subject,
		Issuer:    wc.Issuer,
		Audience:  []string(wc.Audience),
		ID:        wc.ID,
		ExpiresAt: exp,
	}
	if wc.NotBefore != nil {
		c.NotBefore = wc.NotBefore.Time
	}
	if wc.IssuedAt != nil {
		c.IssuedAt = wc.IssuedAt.Time
	}
	if c.Rooms, err = stringList("rooms", wc.Rooms); err != nil {
		return nil, err
	}
	if c.Publish, err = stringList("publish", wc.Publish); err != nil {
		return nil, err
	}
	if c.rooms, err = compileGrants("rooms", c.Rooms, c.Subject); err != nil {
		return nil, err
	}
	if c.publish, err = compileGrants("publish", c.Publish, c.Subject); err != nil {
		return nil, err
	}
	return c, nil
}

// stringList decodes a claim that must be an array of strings (or absent).
func stringList(claim string, raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []any
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalid(nil, claim+" claim must be an array of strings")
	}
	if len(items) > MaxPatterns {
		return nil, invalid(nil, fmt.Sprintf("%s claim has %d patterns (at most %d)", claim, len(items), MaxPatterns))
	}
	list := make([]string, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, invalid(nil, claim+" claim must be an array of strings")
		}
		list[i] = s
	}
	return list, nil
}

// classify turns the jwt package's error into ours, with a description
// that is safe to send to the client: fixed text, nothing from the token
// but a registered algorithm name.
func (v *Verifier) classify(tok *jwt.Token, wc *wireClaims, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		if claim := wrongTypeClaim(tok); claim != "" {
			return invalid(err, claim+" claim has the wrong type")
		}
		return invalid(err, "malformed token")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalid(err, "unknown or missing algorithm (want "+v.method.Alg()+")")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && tok.Method != v.method {
			return invalid(err, "algorithm "+tok.Method.Alg()+" not accepted (want "+v.method.Alg()+")")
		}
		return invalid(err, "bad signature")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case wc.ExpiresAt == nil:
			return invalid(err, "missing exp claim")
		case v.issuer != "" && wc.Issuer == "":
			return invalid(err, "missing iss claim")
		case v.audience != "" && len(wc.Audience) == 0:
			return invalid(err, "missing aud claim")
		}
		return invalid(err, "missing claim")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid(err, "wrong issuer")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid(err, "wrong audience")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid(err, "token not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid(err, "token issued in the future (iat)")
	case errors.Is(err, jwt.ErrTokenExpired):
		return expired(err)
	}
	return invalid(err, "invalid token")
}

// wrongTypeClaim names a registered claim of tok whose JSON type is wrong,
// to explain a token that jwt could not decode ("" if there is none).
func wrongTypeClaim(tok *jwt.Token) string {
	if tok == nil {
		return ""
	}
	parts := strings.Split(tok.Raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return ""
	}
	for _, claim := range []string{"sub", "iss", "jti", "exp", "nbf", "iat", "aud"} {
		raw, ok := m[claim]
		if !ok {
			continue
		}
		var (
			s   string
			n   float64
			ss  []string
			err error
		)
		switch claim {
		case "exp", "nbf", "iat":
			err = json.Unmarshal(raw, &n)
		case "aud":
			if err = json.Unmarshal(raw, &s); err != nil {
				err = json.Unmarshal(raw, &ss)
			}
		default:
			err = json.Unmarshal(raw, &s)
		}
		if err != nil {
			return claim
		}
	}
	return ""
}

// tokenError is Verify's error. Its text is safe to show a client; the
// jwt package's error (whose text may quote the token) is only wrapped.
type tokenError struct {
	kind  error // ErrTokenInvalid or ErrTokenExpired
	desc  string
	cause error
}

func invalid(cause error, desc string) error {
	return &tokenError{kind: ErrTokenInvalid, desc: desc, cause: cause}
}

func expired(cause error) error {
	return &tokenError{kind: ErrTokenExpired, desc: "token expired", cause: cause}
}

func (e *tokenError) Error() string {
	if e.kind == ErrTokenExpired {
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.desc
}

func (e *tokenError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// Authenticate is a primus.Config.Authenticate: it takes the token from
// the request's ?token= (Config.QueryParam) or its "Authorization: Bearer"
// header (both may be present if they carry the same token), verifies it
// and returns an Identity whose UserID is sub, whose Expires is exp and
// whose Claims are the token's *Claims.
//
// Its errors are *primus.AuthError: 401 with an RFC 6750 challenge
// (error="invalid_token" and a description when a token was given), or
// 400 (error="invalid_request") for a request with two different tokens.
func (v *Verifier) Authenticate(r *http.Request) (*primus.Identity, error) {
	token, err := v.tokenFrom(r)
	if err != nil {
		return nil, &primus.AuthError{
			Status:       http.StatusBadRequest,
			Message:      err.Error(),
			Authenticate: challenge("invalid_request", err.Error()),
		}
	}
	c, err := v.Verify(token)
	if err != nil {
		if errors.Is(err, ErrNoToken) {
			return nil, &primus.AuthError{
				Status:       http.StatusUnauthorized,
				Message:      "missing token: send ?" + v.param + "=<jwt> or Authorization: Bearer <jwt>",
				Authenticate: challenge("", ""), // RFC 6750 §3.1: no error code without credentials
			}
		}
		desc := "invalid token"
		var te *tokenError
		if errors.As(err, &te) {
			desc = te.desc
		}
		msg := desc
		if !errors.Is(err, ErrTokenExpired) {
			msg = "invalid token: " + desc
		}
		return nil, &primus.AuthError{
			Status:       http.StatusUnauthorized,
			Message:      msg,
			Authenticate: challenge("invalid_token", desc),
		}
	}
	return &primus.Identity{UserID: c.Subject, Expires: c.ExpiresAt, Claims: c}, nil
}

// tokenFrom finds the request's token: "" when there is none, an error
// when it carries different ones (RFC 6750 allows one method per request;
// the same token twice is harmless, e.g. a proxy that copies it).
func (v *Verifier) tokenFrom(r *http.Request) (string, error) {
	var token string
	add := func(t string) error {
		if t == "" {
			return nil
		}
		if token != "" && t != token {
			return errors.New("more than one token in the request")
		}
		token = t
		return nil
	}
	if r.URL != nil {
		for _, t := range r.URL.Query()[v.param] {
			if err := add(t); err != nil {
				return "", err
			}
		}
	}
	for _, h := range r.Header.Values("Authorization") {
		scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			continue // another scheme, e.g. a proxy's Basic credentials
		}
		if err := add(strings.TrimSpace(cred)); err != nil {
			return "", err
		}
	}
	return token, nil
}

// challenge is an RFC 6750 WWW-Authenticate value.
func challenge(code, desc string) string {
	s := `Bearer realm="primus"`
	if code != "" {
		s += `, error="` + code + `"`
	}
	if desc != "" {
		s += `, error_description="` + quotable(desc) + `"`
	}
	return s
}

// quotable keeps the characters RFC 6750 allows in error_description.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}
