// Package clustertest holds the Redis broker's multi-node tests: several
// Go servers (internal/serverapp, the standalone server's code) in one
// process and as separate primus-server processes on one Redis, and mixed
// clusters of Go nodes and the original Node.js stack (primus 8.0.9 +
// primus-redis-rooms 0.3.2, through internal/nodefixture) in compat mode.
//
// They need redis-server and redis-sentinel, node and npm, and a Go
// toolchain (to build cmd/primus-server); a missing one fails the tests.
//
//	go test -race -count=1 ./redisbroker/clustertest/
package clustertest
