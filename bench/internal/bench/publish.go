package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Publish paths.
const (
	PathWS              = "ws"               // the dialect's publish command on a connection to the publish node
	PathHTTP            = "http"             // POST /api/publish on the publish node (Primus stacks)
	PathRedisNative     = "redis-native"     // the Go broker's native envelope, straight into Redis
	PathRedisCompat     = "redis-compat"     // primus-redis-rooms {"room","data"}, straight into Redis
	PathRedisCentrifuge = "redis-centrifuge" // Centrifuge's Redis broker format, straight into Redis
	PathMembers         = "members"          // room members publish on their own connections
)

// pubMsg is one message to publish.
type pubMsg struct {
	room, writer int
	seq, t       int64
}

// publisher sends batches of messages, in order.
type publisher interface {
	publish(batch []pubMsg) error
	close()
}

// payloadBuf builds message payloads.
type payloadBuf struct {
	size int
	buf  []byte
}

func (b *payloadBuf) payload(m pubMsg) []byte {
	b.buf = appendPayload(b.buf[:0], m.seq, m.t, m.room, m.writer, b.size)
	return b.buf
}

// wsPublisher publishes with the dialect's commands on its own connection.
type wsPublisher struct {
	d    dialect
	nc   net.Conn
	mask [4]byte
	ids  atomic.Uint32
	pb   payloadBuf
	cmd  []byte
	out  []byte
	wmu  sync.Mutex
	done chan struct{}

	refused atomic.Int64 // publishes the server refused
	refusal atomic.Value // the last refusal
}

func dialWSPublisher(t Target, d dialect, size int) (*wsPublisher, error) {
	nc, err := net.DialTimeout("tcp4", t.Addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(handshakeRequest(t.Addr, t.Path)); err != nil {
		nc.Close()
		return nil, err
	}
	rest, err := readHandshake(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	p := &wsPublisher{d: d, nc: nc, mask: [4]byte{0x13, 0x37, 0xbe, 0xef}, pb: payloadBuf{size: size}, done: make(chan struct{})}
	if rest, err = openSession(nc, d, p.mask, &p.ids, rest); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	go p.read(rest)
	return p, nil
}

// read answers heartbeats, notes refusals and discards everything else.
func (p *wsPublisher) read(buf []byte) {
	defer close(p.done)
	tmp := make([]byte, 16<<10)
	for {
		for {
			op, payload, n, err := nextFrame(buf)
			if err != nil || n == 0 {
				if err != nil {
					return
				}
				break
			}
			if op == opText {
				for msg, more := p.d.next(payload); ; msg, more = p.d.next(more) {
					switch kind, _, _ := p.d.classify(msg); kind {
					case msgPing:
						frame := appendClientFrame(nil, opText, p.mask, p.d.pong(nil, msg))
						p.wmu.Lock()
						_, _ = p.nc.Write(frame)
						p.wmu.Unlock()
					case msgRefused:
						p.refused.Add(1)
						p.refusal.Store(string(msg))
					}
					if len(more) == 0 {
						break
					}
				}
			}
			buf = buf[n:]
		}
		n, err := p.nc.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
	}
}

func (p *wsPublisher) publish(batch []pubMsg) error {
	if p.refused.Load() > 0 {
		return fmt.Errorf("%d publishes refused, the last: %v", p.refused.Load(), p.refusal.Load())
	}
	p.out = p.out[:0]
	for _, m := range batch {
		p.cmd = p.d.publish(p.cmd[:0], p.ids.Add(1), roomName(m.room), p.pb.payload(m))
		p.out = appendClientFrame(p.out, opText, p.mask, p.cmd)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := p.nc.Write(p.out)
	return err
}

func (p *wsPublisher) close() {
	p.nc.Close()
	<-p.done
}

// memberPublisher makes room members publish on their own connections.
type memberPublisher struct {
	d       dialect
	pool    *Pool
	members [][]int // room -> client indices
	pb      payloadBuf
	cmd     []byte
	out     []byte
}

func (p *memberPublisher) publish(batch []pubMsg) error {
	for _, m := range batch {
		c := p.pool.conn(p.members[m.room][m.writer])
		p.cmd = p.d.publish(p.cmd[:0], c.ids.Add(1), roomName(m.room), p.pb.payload(m))
		p.out = appendClientFrame(p.out[:0], opText, c.mask, p.cmd)
		if err := c.write(p.out, 10*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (p *memberPublisher) close() {}

// httpPublisher posts to /api/publish, one request at a time on a
// keep-alive connection.
type httpPublisher struct {
	url    string
	client *http.Client
	pb     payloadBuf
	body   []byte
}

func newHTTPPublisher(t Target, size int) *httpPublisher {
	return &httpPublisher{
		url: "http://" + t.Addr + "/api/publish",
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 1, DisableCompression: true,
		}},
		pb: payloadBuf{size: size},
	}
}

func (p *httpPublisher) publish(batch []pubMsg) error {
	for _, m := range batch {
		p.body = append(p.body[:0], `{"rooms":["`...)
		p.body = append(p.body, roomName(m.room)...)
		p.body = append(p.body, `"],"data":`...)
		p.body = append(p.body, p.pb.payload(m)...)
		p.body = append(p.body, '}')
		resp, err := p.client.Post(p.url, "application/json", bytes.NewReader(p.body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST /api/publish: %s", resp.Status)
		}
	}
	return nil
}

func (p *httpPublisher) close() { p.client.CloseIdleConnections() }

// redisFormat is how a server's Redis broker carries a room write.
type redisFormat int

const (
	redisNative     redisFormat = iota // the Go broker's envelope on <prefix>:room:<room>
	redisCompat                        // primus-redis-rooms {"room","data"} on <prefix>.<origin>
	redisCentrifuge                    // Centrifuge's Publication (Protobuf) on <prefix>.client.<channel>
)

// redisPublisher publishes straight into Redis, pipelined, in one of the
// brokers' wire formats; a reader goroutine consumes the replies.
type redisPublisher struct {
	nc      net.Conn
	format  redisFormat
	channel string // prefix
	pb      payloadBuf
	out     []byte
	val     []byte
	chanBuf []byte
	replies atomic.Int64
	errs    atomic.Int64
	lastErr atomic.Value
	done    chan struct{}
}

// benchOrigin is the origin node id of the native envelopes the generator
// publishes (no server has it, so every node delivers them).
const benchOrigin = "primus-bench"

func dialRedisPublisher(addr, prefix string, format redisFormat, size int) (*redisPublisher, error) {
	nc, err := net.DialTimeout("tcp4", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	p := &redisPublisher{nc: nc, format: format, channel: prefix, pb: payloadBuf{size: size}, done: make(chan struct{})}
	go p.read()
	return p, nil
}

func (p *redisPublisher) read() {
	defer close(p.done)
	br := bufio.NewReaderSize(p.nc, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(line) > 0 && line[0] == '-' {
			p.errs.Add(1)
			p.lastErr.Store(string(bytes.TrimSpace(line)))
		}
		p.replies.Add(1)
	}
}

// appendEnvelope appends the native envelope (version 1) of a message
// from benchOrigin to one room: version, id, origin, rooms, except (none),
// then the data (see redisbroker.AppendEnvelope).
func appendEnvelope(dst []byte, id, room string, data []byte) []byte {
	dst = append(dst, 1)
	for _, s := range []string{id, benchOrigin} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(room)))
	dst = append(dst, room...)
	dst = binary.AppendUvarint(dst, 0)
	return append(dst, data...)
}

// appendCentrifugeChannel appends the Redis channel on which Centrifuge's
// Redis broker (v0.40.1, one Redis, not a cluster, no sharded PUB/SUB)
// carries the publications of channel: the broker's prefix, ".client.",
// then the channel (RedisBroker.messageChannelID).
func appendCentrifugeChannel(dst []byte, prefix, channel string) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, ".client."...)
	return append(dst, channel...)
}

// appendCentrifugePublication appends what Node.Publish(channel, data)
// without history makes the Redis broker publish: the Protobuf encoding of
// a protocol.Publication with its data (field 4, bytes) and its time in
// Unix milliseconds (field 9, varint), nothing else, in field order as the
// generated encoder writes it (RedisBroker.publish).
func appendCentrifugePublication(dst, data []byte, unixMs int64) []byte {
	dst = append(dst, 4<<3|2)
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	dst = append(dst, data...)
	if unixMs != 0 {
		dst = append(dst, 9<<3|0)
		dst = binary.AppendUvarint(dst, uint64(unixMs))
	}
	return dst
}

func appendBulk(dst, s []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, s...)
	return append(dst, "\r\n"...)
}

func (p *redisPublisher) publish(batch []pubMsg) error {
	p.out = p.out[:0]
	for _, m := range batch {
		room := roomName(m.room)
		data := p.pb.payload(m)
		switch p.format {
		case redisNative:
			p.chanBuf = append(append(p.chanBuf[:0], p.channel...), ":room:"...)
			p.chanBuf = append(p.chanBuf, room...)
			p.val = appendEnvelope(p.val[:0], "b"+strconv.FormatInt(m.seq, 36), room, data)
		case redisCompat:
			p.chanBuf = append(append(p.chanBuf[:0], p.channel...), "."+benchOrigin...)
			p.val = append(append(append(p.val[:0], `{"room":"`...), room...), `","data":`...)
			p.val = append(append(p.val, data...), '}')
		case redisCentrifuge:
			p.chanBuf = appendCentrifugeChannel(p.chanBuf[:0], p.channel, room)
			p.val = appendCentrifugePublication(p.val[:0], data, time.Now().UnixMilli())
		}
		p.out = append(p.out, "*3\r\n$7\r\nPUBLISH\r\n"...)
		p.out = appendBulk(p.out, p.chanBuf)
		p.out = appendBulk(p.out, p.val)
	}
	_ = p.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := p.nc.Write(p.out); err != nil {
		return err
	}
	if p.errs.Load() > 0 {
		return fmt.Errorf("redis: %v", p.lastErr.Load())
	}
	return nil
}

func (p *redisPublisher) close() {
	p.nc.Close()
	<-p.done
}

var errNoPublisher = errors.New("no publish path")
