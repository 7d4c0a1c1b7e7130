package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// WithTLS makes the server accept only TLS on its port, with a fresh CA and
// a certificate for 127.0.0.1; TLSConfig returns a client configuration
// that trusts it and URL a rediss:// URL.
func WithTLS() Option { return func(s *Server) { s.useTLS = true } }

// TLSConfig is a client TLS configuration trusting the server's CA (nil
// without WithTLS).
func (s *Server) TLSConfig() *tls.Config {
	if s.clientTLS == nil {
		return nil
	}
	return s.clientTLS.Clone()
}

// makeCerts writes ca.pem, server.pem and server.key into s.dir and sets
// s.clientTLS.
func (s *Server) makeCerts(t testing.TB) {
	t.Helper()
	fail := func(err error) {
		if err != nil {
			t.Fatalf("redistest: making TLS certificates: %v", err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fail(err)
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	fail(err)
	caCert, err := x509.ParseCertificate(caDER)
	fail(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fail(err)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	fail(err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	fail(err)
	write := func(name, typ string, der []byte) {
		fail(os.WriteFile(filepath.Join(s.dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("server.pem", "CERTIFICATE", leafDER)
	write("server.key", "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	s.clientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func (s *Server) tlsArgs() []string {
	return []string{
		"--tls-cert-file", filepath.Join(s.dir, "server.pem"),
		"--tls-key-file", filepath.Join(s.dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(s.dir, "ca.pem"),
		"--tls-auth-clients", "no",
	}
}
