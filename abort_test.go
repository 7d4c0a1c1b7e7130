package primus

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

// abort cuts a TLS connection at once even when the client is not reading
// and the socket is full, where tls.Conn.Close would spend up to 5 s
// trying to write its close_notify (abort runs under room index locks).
func TestAbortCutsTLSAtOnce(t *testing.T) {
	certs := httptest.NewUnstartedServer(http.NotFoundHandler())
	certs.StartTLS() // only for its certificate
	defer certs.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		under  net.Conn
		server *tls.Conn
		err    error
	}
	done := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- accepted{err: err}
			return
		}
		sc := tls.Server(c, certs.TLS)
		done <- accepted{c, sc, sc.Handshake()}
	}()
	client, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	under, server := a.under, a.server
	defer server.Close()
	// Fill the socket from below the TLS layer, so that tls.Conn has
	// neither a write in progress nor a failed one.
	_ = under.(*net.TCPConn).SetWriteBuffer(16 << 10)
	junk := make([]byte, 64<<10)
	_ = under.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for range 1000 {
		if _, err := under.Write(junk); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
	}
	_ = under.SetWriteDeadline(time.Time{})

	s := &Spark{conn: server}
	start := time.Now()
	s.abort()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("abort took %v", d)
	}
	if _, err := under.Write([]byte("x")); err == nil {
		t.Fatal("the connection is still open after abort")
	}
}
