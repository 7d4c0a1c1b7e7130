package primus

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// ProtocolVersion is the Primus version whose wire protocol the server
// speaks; /spec reports it, as the original reports its own version.
const ProtocolVersion = "8.0.9"

func writeAuthError(w http.ResponseWriter, err error) {
	status, msg := http.StatusUnauthorized, err.Error()
	var ae *AuthError
	if errors.As(err, &ae) {
		if ae.Status != 0 {
			status = ae.Status
		}
		if ae.Authenticate != "" {
			w.Header().Set("WWW-Authenticate", ae.Authenticate)
		}
	}
	body, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// serveHTTPSurface answers plain requests under the pathname like Primus.
func (srv *Server) serveHTTPSurface(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, srv.cfg.Pathname)
	if origin := r.Header.Get("Origin"); origin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Max-Age", "2592000")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			}
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	switch rest {
	case "/spec":
		// Field order as in the original.
		spec := struct {
			PingInterval any    `json:"pingInterval"`
			Pathname     string `json:"pathname"`
			Version      string `json:"version"`
			Parser       string `json:"parser"`
			Transformer  string `json:"transformer"`
		}{srv.cfg.PingInterval.Milliseconds(), srv.cfg.Pathname, ProtocolVersion, "json", "websockets"}
		if srv.cfg.PingInterval < 0 {
			spec.PingInterval = false
		}
		// json.Marshal, not an Encoder: the original's body has no trailing newline.
		body, _ := json.Marshal(spec)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		return
	case "/primus.js":
		srv.cfg.ClientLibrary.ServeHTTP(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusUpgradeRequired)
	_, _ = w.Write([]byte("Upgrade Required"))
}
