package nodefixture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// ClientOptions configure client.js, the real Primus 8.0.9 Node client.
// Zero values leave the library defaults.
type ClientOptions struct {
	// Pathname is the server pathname compiled into the client (default
	// "/primus"). Primus ignores the path of the URL it is given.
	Pathname string
	// PingTimeout makes the client go offline when no server ping arrives
	// within it. 0: none (what every createSocket client has by default).
	PingTimeout time.Duration
	// Timeout is the connect timeout (library default 10 s).
	Timeout time.Duration
	// ReconnectMin and ReconnectMax bound the reconnect backoff (library
	// defaults 500 ms and unbounded).
	ReconnectMin, ReconnectMax time.Duration
	// ReconnectRetries is the number of reconnect attempts before
	// `reconnect failed` (library default 10).
	ReconnectRetries int
	// Strategy is the reconnect strategy ("disconnect,online,timeout" by
	// default); "none" disables reconnection.
	Strategy string
	// Manual: do not connect until Send(map[string]any{"op": "open"}).
	Manual bool
	// Env adds environment variables ("K=V") for the node process.
	Env []string
}

// Event is one line client.js printed.
type Event struct {
	// Name is the Primus client event: open, data, id, close, end,
	// "reconnect scheduled", reconnect, reconnected, "reconnect timeout",
	// "reconnect failed", offline, online, timeout, error, ping, or
	// "command error" (client.js could not use a stdin line).
	Name string `json:"event"`
	// Data is the decoded message re-encoded by JSON.stringify (data events).
	Data json.RawMessage `json:"data,omitempty"`
	// ID is the spark id (id events).
	ID string `json:"id,omitempty"`
	// Message is the error text (error, reconnect failed/timeout, command error).
	Message string `json:"message,omitempty"`
	// Attempt, Scheduled (ms) and Retries describe a scheduled reconnect.
	Attempt   int   `json:"attempt,omitempty"`
	Scheduled int64 `json:"scheduled,omitempty"`
	Retries   int   `json:"retries,omitempty"`
	// Time is the server timestamp carried by a ping (primus::ping::<ms>).
	Time int64 `json:"time,omitempty"`
	// T is the client's clock (ms since the epoch) when the event fired.
	T int64 `json:"t"`
	// Raw is the whole line.
	Raw json.RawMessage `json:"-"`
}

// Client is a running client.js.
//
// Events are read in order with Next; WaitFor and WaitForData consume events
// up to and including the first match. Every event ever received stays in
// Events().
type Client struct {
	p *proc

	mu     sync.Mutex
	events []Event
	next   int           // index of the next event Next returns
	notify chan struct{} // closed and replaced when an event arrives or the process exits
	ack    int
}

// StartClient starts client.js against url (e.g. Server.URL()). It returns
// at once; wait for the "open" event to know it connected. The process is
// killed by t.Cleanup; its output is logged there if the test failed.
func StartClient(t testing.TB, url string, opts ClientOptions) *Client {
	t.Helper()
	Require(t)

	var env []string
	add := func(name string, d time.Duration) {
		if d > 0 {
			env = append(env, name+"="+strconv.FormatInt(max(d.Milliseconds(), 1), 10))
		}
	}
	if opts.Pathname != "" {
		env = append(env, "PATHNAME="+opts.Pathname)
	}
	add("PING_TIMEOUT", opts.PingTimeout)
	add("TIMEOUT", opts.Timeout)
	add("RECONNECT_MIN", opts.ReconnectMin)
	add("RECONNECT_MAX", opts.ReconnectMax)
	if opts.ReconnectRetries > 0 {
		env = append(env, "RECONNECT_RETRIES="+strconv.Itoa(opts.ReconnectRetries))
	}
	if opts.Strategy != "" {
		env = append(env, "STRATEGY="+opts.Strategy)
	}
	if opts.Manual {
		env = append(env, "MANUAL=1")
	}
	env = append(env, opts.Env...)

	c := &Client{notify: make(chan struct{})}
	p, err := startProc("client.js", []string{url}, env, c.onLine)
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	go func() { // wake up waiters when the process is gone
		<-p.done
		c.mu.Lock()
		c.wake()
		c.mu.Unlock()
	}()
	t.Cleanup(func() {
		c.p.kill()
		if t.Failed() {
			t.Logf("nodefixture: client.js (%s):\n%s", url, c.p.output())
		}
	})
	return c
}

func (c *Client) onLine(line []byte) {
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil || ev.Name == "" {
		ev = Event{Name: "unparsable", Message: string(line)}
	}
	ev.Raw = append(json.RawMessage(nil), line...)
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.wake()
	c.mu.Unlock()
}

// wake must be called with c.mu held.
func (c *Client) wake() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// Send writes one command line to client.js: {"op":"write","data":X},
// {"op":"id"}, {"op":"open"}, {"op":"end"} or {"op":"exit"}.
func (c *Client) Send(op any) error {
	b, err := json.Marshal(op)
	if err != nil {
		return err
	}
	return c.p.send(b)
}

// Write sends data to the server through the Primus client (client.write).
func (c *Client) Write(data any) error {
	return c.Send(map[string]any{"op": "write", "data": data})
}

// Next returns the next event, waiting for it until ctx is done. After the
// process has exited and every event was returned it fails with an error
// wrapping ErrExited.
func (c *Client) Next(ctx context.Context) (Event, error) {
	for {
		c.mu.Lock()
		if c.next < len(c.events) {
			ev := c.events[c.next]
			c.next++
			c.mu.Unlock()
			return ev, nil
		}
		ch := c.notify
		c.mu.Unlock()
		if c.p.exited() {
			// The reader has drained stdout before done was closed, so a
			// second look at the queue is conclusive.
			c.mu.Lock()
			more := c.next < len(c.events)
			c.mu.Unlock()
			if !more {
				return Event{}, fmt.Errorf("%w: client.js: %v; stderr: %s", ErrExited, c.p.waitErr, c.p.stderr.String())
			}
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("nodefixture: waiting for a client.js event: %w", ctx.Err())
		}
	}
}

// WaitFor returns the next event named name, consuming the events before it.
func (c *Client) WaitFor(ctx context.Context, name string) (Event, error) {
	return c.waitFor(ctx, "event "+strconv.Quote(name), func(ev Event) bool { return ev.Name == name })
}

// WaitForData returns the next data event whose payload satisfies match,
// consuming the events before it.
func (c *Client) WaitForData(ctx context.Context, match func(json.RawMessage) bool) (Event, error) {
	return c.waitFor(ctx, "matching data", func(ev Event) bool { return ev.Name == "data" && match(ev.Data) })
}

func (c *Client) waitFor(ctx context.Context, what string, match func(Event) bool) (Event, error) {
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			return Event{}, fmt.Errorf("nodefixture: waiting for %s: %w", what, err)
		}
		if match(ev) {
			return ev, nil
		}
	}
}

// Do sends a command of the server's command protocol (join, leave,
// leaveAll, publish) with a fresh "ack" value, waits for the server's reply
// and returns its "error" as an error. The events before the reply are
// consumed (they remain in Events()); note that for a publish to a room the
// client is in, the client's own copy arrives before the reply.
func (c *Client) Do(ctx context.Context, cmd map[string]any) error {
	c.mu.Lock()
	c.ack++
	ack := "nodefixture-" + strconv.Itoa(c.ack)
	c.mu.Unlock()
	msg := make(map[string]any, len(cmd)+1)
	for k, v := range cmd {
		msg[k] = v
	}
	msg["ack"] = ack
	if err := c.Write(msg); err != nil {
		return err
	}
	type replyMsg struct {
		Ack   string `json:"ack"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	var reply replyMsg
	_, err := c.WaitForData(ctx, func(d json.RawMessage) bool {
		var r replyMsg
		if json.Unmarshal(d, &r) != nil || r.Ack != ack {
			return false
		}
		reply = r
		return true
	})
	if err != nil {
		return err
	}
	if !reply.OK {
		if reply.Error == "" {
			reply.Error = "no ok in reply"
		}
		return errors.New(reply.Error)
	}
	return nil
}

// ID asks the server for this client's spark id (client.id()).
func (c *Client) ID(ctx context.Context) (string, error) {
	if err := c.Send(map[string]any{"op": "id"}); err != nil {
		return "", err
	}
	ev, err := c.WaitFor(ctx, "id")
	return ev.ID, err
}

// Events returns every event received so far, consumed or not.
func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// Wait waits for client.js to exit on its own (after {"op":"exit"}, for
// example) and returns its exit error.
func (c *Client) Wait(ctx context.Context) error { return c.p.wait(ctx) }

// Kill kills client.js and waits for it to be reaped.
func (c *Client) Kill() { c.p.kill() }

// Output returns what client.js printed so far.
func (c *Client) Output() string { return c.p.output() }
