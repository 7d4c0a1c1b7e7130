package serverapp

import (
	_ "embed"
	"html"
	"net/http"
	"strings"
)

//go:embed demo.html
var demoHTML string

func (a *App) handleDemo(w http.ResponseWriter, _ *http.Request) {
	page := strings.ReplaceAll(demoHTML, "{{PATHNAME}}", html.EscapeString(a.Primus.Pathname()))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(page))
}
