// Package testkit holds what the test packages of this module share: an
// unbounded queue that callbacks and readers put into without blocking, a
// poll helper for conditions nothing signals, a Primus WebSocket client
// that records what it receives, and a raw client for frames a real client
// would never send.
//
// Tests never sleep to synchronise: they wait for the event with a
// deadline (Timeout), so a slow machine makes them slower, not flaky.
package testkit

import (
	"testing"
	"time"
)

// Timeout bounds every wait for an event.
const Timeout = 10 * time.Second

// PollInterval is the pause between two evaluations of a polled condition:
// short enough not to slow tests down, long enough not to starve the code
// under test of CPU.
const PollInterval = 5 * time.Millisecond

// WaitFor polls cond until it holds and fails the test if it does not
// within Timeout. It is for conditions nothing signals (stats, health
// endpoints, Redis state); what names the awaited state in the failure.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Eventually(Timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Eventually polls cond until it holds or d has passed, and reports
// whether it held. It is WaitFor for callers that explain a timeout
// themselves, or that poll for a short while before acting again.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(PollInterval)
	}
	return true
}
