//go:build !unix

package nodefixture

// lockFile is a no-op where flock is unavailable: concurrent first installs
// from several test processes may then race.
func lockFile(string) (func(), error) { return func() {}, nil }
