package primus

import "time"

// Identity is who a client is, as Config.Authenticate established it from
// the upgrade request.
type Identity struct {
	// UserID names the user (a token's "sub"); Spark.UserID returns it.
	UserID string
	// Expires, when not zero, is when the credentials expire: an upgrade at
	// or after it is refused with 401, and an open spark is ended then with
	// ReasonTokenExpired (reconnect-style, so that a client that brings
	// fresh credentials comes back).
	Expires time.Time
	// Claims is what the authenticator wants the application to see (for
	// package auth, its *auth.Claims).
	Claims any
}

// UserID returns the user Config.Authenticate found for this spark, or "".
func (s *Spark) UserID() string {
	if s.identity == nil {
		return ""
	}
	return s.identity.UserID
}

// Identity returns what Config.Authenticate found for this spark, or nil
// when the server has no Authenticate.
func (s *Spark) Identity() *Identity { return s.identity }
