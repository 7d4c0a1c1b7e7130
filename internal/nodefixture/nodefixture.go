// Package nodefixture drives the Node.js reference stack in testdata/node
// (primus 8.0.9 + primus-redis-rooms 0.3.2, the original implementation this
// module re-implements) from Go tests: the reference server (server.js) and a
// scriptable real Primus client (client.js).
//
// It is a test helper: every entry point takes a testing.TB, fails the test
// (never skips it) when node or npm is missing, and registers cleanups that
// stop the processes it started. Nothing here synchronises with sleeps: every
// wait is bounded by a context or a fixed start-up timeout.
package nodefixture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// minNodeMajor is the oldest node the fixture is known to run on.
	minNodeMajor = 18
	// installTimeout bounds `npm ci`.
	installTimeout = 10 * time.Minute
	// lockName is the flock file that serialises installs across processes
	// (ignored by testdata/node/.gitignore).
	lockName = ".npm-ci.lock"
	// markerName records, inside node_modules, the hash of the
	// package-lock.json it was installed from.
	markerName = ".nodefixture-installed"
)

// ErrExited is returned (wrapped) by Client methods once the node process has
// exited.
var ErrExited = errors.New("nodefixture: process exited")

var (
	dirOnce sync.Once
	dir     string

	installOnce sync.Once
	installErr  error
)

// Dir returns the absolute path of the npm fixture (testdata/node in this
// module).
func Dir() string {
	dirOnce.Do(func() { dir = findDir() })
	return dir
}

func findDir() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		d := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "node")
		if _, err := os.Stat(filepath.Join(d, "server.js")); err == nil {
			return d
		}
	}
	// Built with -trimpath: look upwards from the working directory (go test
	// runs in the package directory).
	wd, err := os.Getwd()
	if err != nil {
		return filepath.Join("testdata", "node")
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "testdata", "node")
		if _, err := os.Stat(filepath.Join(cand, "server.js")); err == nil {
			return cand
		}
		if filepath.Dir(d) == d {
			return filepath.Join(wd, "testdata", "node")
		}
	}
}

// Require makes sure node is usable and the fixture's node_modules matches
// its package-lock.json, running `npm ci` (once per machine and lock file
// version, serialised across processes by a file lock) if needed. It fails
// the test when that is impossible; it never skips.
func Require(t testing.TB) {
	t.Helper()
	installOnce.Do(func() { installErr = install() })
	if installErr != nil {
		t.Fatal(installErr)
	}
}

func install() error {
	d := Dir()
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("nodefixture: node is not in PATH; the Node reference fixture %s needs node >= %d and npm (for example: apt-get install nodejs npm): %v", d, minNodeMajor, err)
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return fmt.Errorf("nodefixture: node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if major < minNodeMajor {
		return fmt.Errorf("nodefixture: node %s is too old; the fixture %s needs node >= %d", v, d, minNodeMajor)
	}

	lockfile, err := os.ReadFile(filepath.Join(d, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("nodefixture: %v", err)
	}
	sum := sha256.Sum256(lockfile)
	want := hex.EncodeToString(sum[:])
	marker := filepath.Join(d, "node_modules", markerName)
	if installed(marker, want) { // fast path, no lock needed
		return nil
	}

	unlock, err := lockFile(filepath.Join(d, lockName))
	if err != nil {
		return fmt.Errorf("nodefixture: locking %s: %v", d, err)
	}
	defer unlock()
	if installed(marker, want) { // another process installed it meanwhile
		return nil
	}

	if _, err := exec.LookPath("npm"); err != nil {
		return fmt.Errorf("nodefixture: %s/node_modules is missing and npm is not in PATH to install it (run `npm ci` there): %v", d, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	// --ignore-scripts: the only install script in the tree (storage-engine,
	// a React Native shim under primus's diagnostics) is irrelevant to node.
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = d
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nodefixture: `npm ci` in %s failed: %v\n%s", d, err, buf.String())
	}
	for _, pkg := range []string{"primus", "primus-redis-rooms", "ws"} {
		if _, err := os.Stat(filepath.Join(d, "node_modules", pkg, "package.json")); err != nil {
			return fmt.Errorf("nodefixture: `npm ci` in %s did not install %s: %v\n%s", d, pkg, err, buf.String())
		}
	}
	if err := os.WriteFile(marker, []byte(want+"\n"), 0o644); err != nil {
		return fmt.Errorf("nodefixture: %v", err)
	}
	return nil
}

func installed(marker, want string) bool {
	b, err := os.ReadFile(marker)
	return err == nil && strings.TrimSpace(string(b)) == want
}
