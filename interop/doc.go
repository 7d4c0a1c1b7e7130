// Package interop holds interoperability tests only: they drive the real
// Primus 8.0.9 Node client (npm, pinned in testdata/node/package.json and
// run through internal/nodefixture) against this module's Go server, the
// primus.Server and the standalone server of internal/serverapp.
//
// The tests need node (>= 18) and npm; nodefixture installs the pinned
// packages with `npm ci` on first use and fails, never skips, when it
// cannot. Run them with:
//
//	go test -race -count=1 ./interop/
package interop
