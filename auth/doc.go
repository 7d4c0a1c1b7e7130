// Package auth decides who may connect to a primus.Server, which rooms a
// spark may join and which it may publish to, from a signed JWT.
//
// A Verifier checks tokens with one key; its Authenticate method is a
// primus.Config.Authenticate:
//
//	v, err := auth.New(auth.Config{HMACSecret: secret})
//	srv, err := primus.New(primus.Config{Authenticate: v.Authenticate, ...})
//
// # The token
//
// The client sends the token on the upgrade request, as the query parameter
// ?token=<jwt> (what a browser's WebSocket can do) or as the header
// "Authorization: Bearer <jwt>". A request that carries two different
// tokens is refused with 400. A request without a token, or with one that
// fails verification, is refused with 401, a JSON body {"error": "..."}
// saying what is wrong, and an RFC 6750 WWW-Authenticate challenge.
//
// Claims:
//
//   - sub (required, non-empty): the user; Spark.UserID returns it.
//   - exp (required): when the token expires. An expired token is refused;
//     the server ends an open spark when its token expires, with
//     primus.ReasonTokenExpired. That close is reconnect-style: a client
//     that fetches a fresh token before reconnecting comes back.
//   - nbf, iat (optional): a token used before nbf or issued in the future
//     is refused (Config.Leeway allows for clock skew).
//   - iss, aud: checked when Config.Issuer / Config.Audience are set.
//   - rooms: the rooms the spark may join, as patterns.
//   - publish: the rooms the spark may publish to, as patterns.
//
// rooms and publish, when present, must be arrays of strings; anything else
// makes the token invalid. Absent or empty, they grant nothing: everything
// not granted is refused.
//
// # Patterns
//
// In a pattern, * matches any run of characters (also none) and every other
// character stands for itself; a pattern matches a whole room name.
// "{sub}" is replaced by the token's subject, literally: with sub "ann",
// "user:{sub}" grants the room "user:ann" only, and with sub "*" it grants
// the room "user:*" only, never every room. "chat:*" grants every room
// whose name starts with "chat:"; "*" grants every room. The empty room
// name is never granted. Claims.CanJoin and Claims.CanPublish answer from
// the patterns, compiled once per token; ClaimsOf finds a spark's Claims.
//
// # Keys and algorithms
//
// Each key type accepts exactly one algorithm, so a token cannot choose how
// it is checked: an HMAC secret (at least 32 bytes) accepts HS256, an RSA
// public key (at least 2048 bits) RS256, an ECDSA P-256 key ES256 and an
// Ed25519 key EdDSA. "alg": "none" is always refused. ParsePublicKeyPEM
// reads public keys and certificates.
//
// # Out of scope
//
// There is no in-band refresh (a spark keeps the token it connected with
// and is ended when it expires), no JWKS or key rotation (one key per
// Verifier) and no revocation list (keep tokens short-lived).
package auth
