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
	PathWS          = "ws"           // {"publish":...} on a connection to the publish node
	PathHTTP        = "http"         // POST /api/publish on the publish node
	PathRedisNative = "redis-native" // the Go broker's native envelope, straight into Redis
	PathRedisCompat = "redis-compat" // primus-redis-rooms {"room","data"}, straight into Redis
	PathMembers     = "members"      // room members publish on their own connections
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

func appendPublishCommand(dst []byte, room string, data []byte) []byte {
	dst = append(dst, `{"publish":{"room":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

// wsPublisher publishes with the command protocol on its own connection.
type wsPublisher struct {
	nc   net.Conn
	mask [4]byte
	pb   payloadBuf
	cmd  []byte
	out  []byte
	wmu  sync.Mutex
	done chan struct{}
}

func dialWSPublisher(t Target, size int) (*wsPublisher, error) {
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
	_ = nc.SetDeadline(time.Time{})
	p := &wsPublisher{nc: nc, mask: [4]byte{0x13, 0x37, 0xbe, 0xef}, pb: payloadBuf{size: size}, done: make(chan struct{})}
	go p.read(rest)
	return p, nil
}

// read answers heartbeats and discards everything else.
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
			if op == opText && bytes.HasPrefix(payload, pingPrefix) {
				frame := appendClientFrame(nil, opText, p.mask, pongFor(nil, payload))
				p.wmu.Lock()
				_, _ = p.nc.Write(frame)
				p.wmu.Unlock()
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
	p.out = p.out[:0]
	for _, m := range batch {
		p.cmd = appendPublishCommand(p.cmd[:0], roomName(m.room), p.pb.payload(m))
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
	pool    *Pool
	members [][]int // room -> client indices
	pb      payloadBuf
	cmd     []byte
	out     []byte
}

func (p *memberPublisher) publish(batch []pubMsg) error {
	for _, m := range batch {
		c := p.pool.conn(p.members[m.room][m.writer])
		p.cmd = appendPublishCommand(p.cmd[:0], roomName(m.room), p.pb.payload(m))
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

// redisPublisher publishes straight into Redis, pipelined, in either
// wire format; a reader goroutine consumes the replies.
type redisPublisher struct {
	nc      net.Conn
	native  bool
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

func dialRedisPublisher(addr, prefix string, native bool, size int) (*redisPublisher, error) {
	nc, err := net.DialTimeout("tcp4", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	p := &redisPublisher{nc: nc, native: native, channel: prefix, pb: payloadBuf{size: size}, done: make(chan struct{})}
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
		if p.native {
			p.chanBuf = append(append(p.chanBuf[:0], p.channel...), ":room:"...)
			p.chanBuf = append(p.chanBuf, room...)
			p.val = appendEnvelope(p.val[:0], "b"+strconv.FormatInt(m.seq, 36), room, data)
		} else {
			p.chanBuf = append(append(p.chanBuf[:0], p.channel...), "."+benchOrigin...)
			p.val = append(append(append(p.val[:0], `{"room":"`...), room...), `","data":`...)
			p.val = append(append(p.val, data...), '}')
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
