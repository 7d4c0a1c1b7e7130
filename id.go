package primus

import "crypto/rand"

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// newID returns 21 random characters of A-Za-z0-9_-, like nanoid.
func newID() string {
	var b [21]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	for i := range b {
		b[i] = idAlphabet[b[i]&63]
	}
	return string(b[:])
}
