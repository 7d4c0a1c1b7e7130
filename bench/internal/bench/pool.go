package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Target is one server node's WebSocket endpoint.
type Target struct {
	Addr string // host:port (IPv4 loopback)
	Path string // request path with query, e.g. /primus?_primuscb=bench
}

// ParseTarget parses ws://host:port/path of a Primus server (default path
// /primus?_primuscb=bench).
func ParseTarget(s string) (Target, error) { return parseTarget(s, primusDialect{}) }

// parseTarget parses ws://host:port/path; a missing path or query is the
// dialect's.
func parseTarget(s string, d dialect) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, err
	}
	if u.Scheme != "ws" || u.Host == "" {
		return Target{}, fmt.Errorf("target %q: want ws://host:port/path", s)
	}
	defPath, defQuery, _ := strings.Cut(d.path(), "?")
	path := u.Path
	if path == "" {
		path = defPath
	}
	q := u.RawQuery
	if q == "" {
		q = defQuery
	}
	if q != "" {
		path += "?" + q
	}
	return Target{Addr: u.Host, Path: path}, nil
}

// ClientSpec says where client i connects and which room it joins.
type ClientSpec struct {
	Target int // index into the pool's targets
	Room   int // room index, or -1 for none (idle clients)
}

// conn is one client connection. After Dial it is served by one loop;
// fields below "loop-owned" are touched only by that loop.
type conn struct {
	fd     int
	idx    int
	room   int
	target int
	mask   [4]byte
	wmu    sync.Mutex // serialises writes (pongs from the loop, publishes)
	dead   atomic.Bool
	ids    atomic.Uint32 // the last command id used

	// loop-owned
	carry []byte
	last  [maxWriters]int64
	warm  bool
}

// maxWriters bounds the writers per room that sequence tracking follows.
const maxWriters = 4

// recvStats is what one loop observed during one step.
type recvStats struct {
	hist      *hdrhistogram.Histogram // latency in µs
	received  int64                   // benchmark messages (warm-up excluded)
	dups      int64                   // sequence numbers seen before (or out of order)
	gaps      int64                   // sequence numbers skipped when seen (may be filled by reordering)
	misrouted int64                   // messages for a room the client is not in
	pings     int64
	acks      int64 // replies to commands (joins, publishes)
	refused   int64 // commands the server refused
	other     int64
	reads     int64 // read(2) calls that returned data
}

// Latency histograms hold microseconds, 1 µs to 5 minutes, 3 digits.
const histMax = 300_000_000

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, 3) }

func newRecvStats() *recvStats { return &recvStats{hist: newHist()} }

func (s *recvStats) add(o *recvStats) {
	s.hist.Merge(o.hist)
	s.received += o.received
	s.dups += o.dups
	s.gaps += o.gaps
	s.misrouted += o.misrouted
	s.pings += o.pings
	s.acks += o.acks
	s.refused += o.refused
	s.other += o.other
	s.reads += o.reads
}

// Pool is the generator's client connections, read by a few epoll loops
// (one goroutine each, not one per connection): a loop reads every ready
// connection into one shared buffer and parses all the frames in it, so a
// delivery costs the generator one read(2) at most and no allocation.
type Pool struct {
	d       dialect
	targets []Target
	sources [][4]byte
	perSrc  int
	epoch   time.Time
	loops   []*loop
	byFD    []atomic.Pointer[conn]

	mu    sync.Mutex
	conns []*conn

	closing atomic.Bool
	wg      sync.WaitGroup

	busyEvents int
	busyPause  time.Duration
}

type loop struct {
	p        *Pool
	epfd     int
	received atomic.Int64 // benchmark messages, for drain progress
	warmed   atomic.Int64
	lost     atomic.Int64 // connections that closed while the pool was open

	mu sync.Mutex
	st *recvStats

	pong, frame []byte // scratch for heartbeat answers
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	Targets []Target
	// Protocol is the servers' client protocol (ProtoPrimus, the default,
	// or ProtoCentrifuge).
	Protocol string
	// Sources are the local addresses clients bind to, PerSource clients
	// each in turn (default 127.0.0.2.. 127.0.0.9, 5000 each), so that tens
	// of thousands of connections never run out of ephemeral ports.
	Sources   [][4]byte
	PerSource int
	// Loops is the number of epoll loops (default 2).
	Loops int
	// Epoch is the zero of message send times (default: now).
	Epoch time.Time
	// BusyPause is how long a loop pauses after an epoll_wait that returned
	// at least BusyEvents ready connections (defaults 300µs, 8; negative:
	// never pause).
	BusyPause  time.Duration
	BusyEvents int
}

// NewPool starts the loops of an empty pool.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if len(cfg.Sources) == 0 {
		for i := byte(2); i <= 9; i++ {
			cfg.Sources = append(cfg.Sources, [4]byte{127, 0, 0, i})
		}
	}
	if cfg.PerSource <= 0 {
		cfg.PerSource = 5000
	}
	if cfg.Loops <= 0 {
		cfg.Loops = 2
	}
	if cfg.Epoch.IsZero() {
		cfg.Epoch = time.Now()
	}
	if cfg.BusyPause == 0 {
		cfg.BusyPause = 300 * time.Microsecond
	}
	if cfg.BusyEvents <= 0 {
		cfg.BusyEvents = 8
	}
	d, err := dialectFor(cfg.Protocol)
	if err != nil {
		return nil, err
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	p := &Pool{
		d:       d,
		targets: cfg.Targets,
		sources: cfg.Sources,
		perSrc:  cfg.PerSource,
		epoch:   cfg.Epoch,
		byFD:    make([]atomic.Pointer[conn], lim.Cur+64),

		busyEvents: cfg.BusyEvents,
		busyPause:  cfg.BusyPause,
	}
	for range cfg.Loops {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		l := &loop{p: p, epfd: epfd, st: newRecvStats()}
		p.loops = append(p.loops, l)
		p.wg.Add(1)
		go l.run()
	}
	return p, nil
}

// now is the generator's clock: nanoseconds since the epoch, monotonic.
func (p *Pool) now() int64 { return int64(time.Since(p.epoch)) }

// Len returns the number of connections.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Dial connects clients in order (parallel at a time), completes each
// handshake and room join (waiting for the ack), then hands it to a loop.
func (p *Pool) Dial(ctx context.Context, specs []ClientSpec, parallel int) error {
	if parallel <= 0 {
		parallel = 32
	}
	base := p.Len()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	results := make([]*conn, len(specs))
	for range min(parallel, len(specs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(specs) || ctx.Err() != nil {
					return
				}
				c, err := p.dialOne(ctx, base+i, specs[i])
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("client %d: %w", base+i, err); cancel() })
					return
				}
				results[i] = c
			}
		}()
	}
	wg.Wait()
	p.mu.Lock()
	for _, c := range results {
		if c != nil {
			p.conns = append(p.conns, c)
		}
	}
	p.mu.Unlock()
	return first
}

func (p *Pool) dialOne(ctx context.Context, idx int, spec ClientSpec) (*conn, error) {
	t := p.targets[spec.Target]
	src := p.sources[(idx/p.perSrc)%len(p.sources)]
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(src[0], src[1], src[2], src[3])},
		Timeout:   30 * time.Second,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				// IP_BIND_ADDRESS_NO_PORT: choose the port at connect time,
				// per destination, instead of at bind time.
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	nc, err := d.DialContext(ctx, "tcp4", t.Addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := nc.Write(handshakeRequest(t.Addr, t.Path)); err != nil {
		return nil, err
	}
	rest, err := readHandshake(nc)
	if err != nil {
		return nil, err
	}
	c := &conn{idx: idx, room: spec.Room, target: spec.Target}
	c.mask = [4]byte{byte(idx), byte(idx >> 8), 0x5a, 0xa5}
	if rest, err = openSession(nc, p.d, c.mask, &c.ids, rest); err != nil {
		return nil, err
	}
	if spec.Room >= 0 {
		room := roomName(spec.Room)
		id := c.ids.Add(1)
		if _, err := nc.Write(appendClientFrame(nil, opText, c.mask, p.d.join(nil, id, room))); err != nil {
			return nil, err
		}
		if rest, err = awaitReply(nc, p.d, c.mask, id, rest); err != nil {
			return nil, fmt.Errorf("join %s: %w", room, err)
		}
	}
	// Frames already read would wait for the next readiness event: answer
	// the heartbeats among them now and drop the rest (warm-up repeats).
	if c.carry, err = answerPings(nc, p.d, c.mask, rest); err != nil {
		return nil, err
	}
	// Take over the socket: a duplicate of the descriptor for our epoll,
	// then the net.Conn is closed (which removes it from Go's poller).
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		c.fd = int(r)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	nc.Close()
	if err := syscall.SetNonblock(c.fd, true); err != nil {
		syscall.Close(c.fd)
		return nil, err
	}
	if c.fd >= len(p.byFD) {
		syscall.Close(c.fd)
		return nil, fmt.Errorf("descriptor %d over the open-file limit", c.fd)
	}
	l := p.loops[idx%len(p.loops)]
	p.byFD[c.fd].Store(c)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		p.byFD[c.fd].Store(nil)
		syscall.Close(c.fd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return c, nil
}

// roomName is the name of room index i on the servers.
func roomName(i int) string { return "r" + strconv.Itoa(i) }

// openSession sends the dialect's hello command, if it has one, and waits
// for its reply; it returns the bytes read past the reply's frame.
func openSession(nc net.Conn, d dialect, mask [4]byte, ids *atomic.Uint32, buf []byte) ([]byte, error) {
	id := ids.Load() + 1
	cmd, ok := d.hello(nil, id)
	if !ok {
		return buf, nil
	}
	ids.Store(id)
	if _, err := nc.Write(appendClientFrame(nil, opText, mask, cmd)); err != nil {
		return nil, err
	}
	rest, err := awaitReply(nc, d, mask, id, buf)
	if err != nil {
		return nil, fmt.Errorf("opening the session: %w", err)
	}
	return rest, nil
}

// awaitReply reads until the reply to command id arrives, answering
// heartbeats; it returns the bytes read past the frame that held it.
func awaitReply(nc net.Conn, d dialect, mask [4]byte, id uint32, buf []byte) ([]byte, error) {
	tmp := make([]byte, 4096)
	for {
		for {
			op, payload, n, err := nextFrame(buf)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				break
			}
			switch op {
			case opText:
				var (
					done    bool
					refusal []byte
				)
				for msg, more := d.next(payload); ; msg, more = d.next(more) {
					switch kind, _, rid := d.classify(msg); {
					case kind == msgPing:
						if _, err := nc.Write(appendClientFrame(nil, opText, mask, d.pong(nil, msg))); err != nil {
							return nil, err
						}
					case kind == msgReply && rid == id:
						done = true
					case kind == msgRefused && rid == id:
						refusal = msg
					}
					if len(more) == 0 {
						break
					}
				}
				if refusal != nil {
					return nil, fmt.Errorf("refused: %s", refusal)
				}
				if done {
					return append([]byte(nil), buf[n:]...), nil
				}
			case opPing:
				if _, err := nc.Write(appendClientFrame(nil, opPong, mask, payload)); err != nil {
					return nil, err
				}
			case opClose:
				return nil, errors.New("closed by the server")
			}
			buf = buf[n:]
		}
		n, err := nc.Read(tmp)
		if err != nil {
			return nil, fmt.Errorf("waiting for the reply: %w", err)
		}
		buf = append(buf, tmp[:n]...)
	}
}

// answerPings answers the heartbeats among the whole frames in buf and
// returns the trailing partial frame.
func answerPings(nc net.Conn, d dialect, mask [4]byte, buf []byte) ([]byte, error) {
	for {
		op, payload, n, err := nextFrame(buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		if op == opText {
			for msg, more := d.next(payload); ; msg, more = d.next(more) {
				if kind, _, _ := d.classify(msg); kind == msgPing {
					if _, err := nc.Write(appendClientFrame(nil, opText, mask, d.pong(nil, msg))); err != nil {
						return nil, err
					}
				}
				if len(more) == 0 {
					break
				}
			}
		}
		buf = buf[n:]
	}
}

// Warmed returns how many connections received a warm-up message.
func (p *Pool) Warmed() int64 {
	var n int64
	for _, l := range p.loops {
		n += l.warmed.Load()
	}
	return n
}

// Received returns the benchmark messages received so far (all steps).
func (p *Pool) Received() int64 {
	var n int64
	for _, l := range p.loops {
		n += l.received.Load()
	}
	return n
}

// Lost returns how many connections closed unexpectedly.
func (p *Pool) Lost() int64 {
	var n int64
	for _, l := range p.loops {
		n += l.lost.Load()
	}
	return n
}

// Swap returns what the loops observed since the previous Swap.
func (p *Pool) Swap() *recvStats {
	total := newRecvStats()
	for _, l := range p.loops {
		fresh := newRecvStats()
		l.mu.Lock()
		st := l.st
		l.st = fresh
		l.mu.Unlock()
		total.add(st)
	}
	return total
}

// conn returns client i.
func (p *Pool) conn(i int) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[i]
}

func (c *conn) write(b []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var deadline time.Time
	for len(b) > 0 {
		if c.dead.Load() {
			return errors.New("connection closed")
		}
		n, err := syscall.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch err {
		case nil, syscall.EINTR:
		case syscall.EAGAIN:
			if deadline.IsZero() {
				deadline = time.Now().Add(timeout)
			} else if time.Now().After(deadline) {
				return errors.New("write timed out (socket buffer full)")
			}
			sleepPrecise(50 * time.Microsecond)
		default:
			return err
		}
	}
	return nil
}

// Close stops the loops and closes every connection.
func (p *Pool) Close() {
	if p.closing.Swap(true) {
		return
	}
	p.wg.Wait()
	p.mu.Lock()
	for _, c := range p.conns {
		if !c.dead.Swap(true) {
			syscall.Close(c.fd)
		}
	}
	p.conns = nil
	p.mu.Unlock()
	for _, l := range p.loops {
		syscall.Close(l.epfd)
	}
}

func (l *loop) run() {
	defer l.p.wg.Done()
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 256<<10)
	for !l.p.closing.Load() {
		n, err := syscall.EpollWait(l.epfd, events, 50)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		if n <= 0 {
			continue
		}
		now := l.p.now()
		l.mu.Lock()
		st := l.st
		before := st.received
		for _, ev := range events[:n] {
			c := l.p.byFD[ev.Fd].Load()
			if c == nil || c.dead.Load() {
				continue
			}
			l.serve(c, buf, now, st)
		}
		got := st.received - before
		l.mu.Unlock()
		if got != 0 {
			l.received.Add(got)
		}
		if n >= l.p.busyEvents && l.p.busyPause > 0 {
			// Under load, let data pile up a little: fewer wake-ups and
			// fewer, fuller reads (the generator shares the cores with the
			// servers). Adds at most busyPause to the latencies measured.
			sleepPrecise(l.p.busyPause)
		}
	}
}

// serve reads what c has and handles every whole frame in it.
func (l *loop) serve(c *conn, buf []byte, now int64, st *recvStats) {
	off := copy(buf, c.carry)
	c.carry = c.carry[:0]
	n, err := syscall.Read(c.fd, buf[off:])
	if n <= 0 {
		if err == syscall.EAGAIN || err == syscall.EINTR {
			c.carry = append(c.carry, buf[:off]...)
			return
		}
		l.drop(c)
		return
	}
	st.reads++
	data := buf[:off+n]
	for {
		op, payload, fn, err := nextFrame(data)
		if err != nil {
			l.drop(c)
			return
		}
		if fn == 0 {
			break
		}
		switch op {
		case opText:
			for msg, more := l.p.d.next(payload); ; msg, more = l.p.d.next(more) {
				l.message(c, msg, now, st)
				if len(more) == 0 {
					break
				}
			}
		case opPing:
			l.frame = appendClientFrame(l.frame[:0], opPong, c.mask, payload)
			_ = c.write(l.frame, time.Second)
		case opClose:
			l.drop(c)
			return
		default:
			st.other++
		}
		data = data[fn:]
	}
	if len(data) > 0 {
		if len(data) > len(buf)/2 {
			l.drop(c) // a frame larger than the benchmark ever sends
			return
		}
		c.carry = append(c.carry, data...)
	}
}

// message handles one server message: a delivery is checked and timed,
// a heartbeat answered, anything else counted.
func (l *loop) message(c *conn, msg []byte, now int64, st *recvStats) {
	kind, data, _ := l.p.d.classify(msg)
	switch kind {
	case msgData:
		m, ok := parsePayload(data)
		if !ok {
			st.other++
			return
		}
		if m.seq == 0 {
			if !c.warm {
				c.warm = true
				l.warmed.Add(1)
			}
			return
		}
		st.received++
		if m.room != c.room {
			st.misrouted++
		}
		if w := m.writer; w >= 0 && w < maxWriters {
			switch last := c.last[w]; {
			case m.seq <= last:
				st.dups++
			default:
				st.gaps += m.seq - last - 1
				c.last[w] = m.seq
			}
		}
		lat := (now - m.t) / 1000
		if lat < 1 {
			lat = 1
		} else if lat > histMax {
			lat = histMax
		}
		_ = st.hist.RecordValue(lat)
	case msgPing:
		st.pings++
		l.pong = l.p.d.pong(l.pong[:0], msg)
		l.frame = appendClientFrame(l.frame[:0], opText, c.mask, l.pong)
		_ = c.write(l.frame, time.Second)
	case msgReply:
		st.acks++
	case msgRefused:
		st.acks++
		st.refused++
	default:
		st.other++
	}
}

func (l *loop) drop(c *conn) {
	if c.dead.Swap(true) {
		return
	}
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	l.p.byFD[c.fd].Store(nil)
	c.wmu.Lock() // no write in flight on a descriptor about to be reused
	syscall.Close(c.fd)
	c.wmu.Unlock()
	if !l.p.closing.Load() {
		l.lost.Add(1)
	}
}

// sleepPrecise sleeps d with nanosleep(2): Go's timers wake up to a
// millisecond late, too coarse for pacing a publisher.
func sleepPrecise(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
