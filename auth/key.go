package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// methodFor is the one algorithm a public key accepts.
func methodFor(key crypto.PublicKey) (jwt.SigningMethod, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("auth: nil RSA public key")
		}
		if n := k.N.BitLen(); n < 2048 {
			return nil, fmt.Errorf("auth: RSA key of %d bits; RS256 needs at least 2048", n)
		}
		return jwt.SigningMethodRS256, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("auth: nil ECDSA public key")
		}
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("auth: ECDSA key on %s; only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("auth: Ed25519 public key of %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return jwt.SigningMethodEdDSA, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, *ed25519.PrivateKey:
		return nil, errors.New("auth: PublicKey is a private key; configure its public key")
	case []byte, string:
		return nil, errors.New("auth: PublicKey is a secret; configure HMACSecret for HS256")
	}
	return nil, fmt.Errorf("auth: unsupported public key type %T (want *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey)", key)
}

// ParsePublicKeyPEM reads the first PEM block of data: a PKIX "PUBLIC KEY",
// a PKCS #1 "RSA PUBLIC KEY" or a "CERTIFICATE" (its key is used; the
// certificate itself is not checked). The key must be one Config.PublicKey
// accepts.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("auth: no PEM block found (want -----BEGIN PUBLIC KEY-----)")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("auth: PEM block is a %s; give the public key (e.g. openssl pkey -pubout)", block.Type)
	default:
		return nil, fmt.Errorf("auth: PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: parsing %s: %w", block.Type, err)
	}
	if _, err := methodFor(key); err != nil {
		return nil, err
	}
	return key, nil
}
