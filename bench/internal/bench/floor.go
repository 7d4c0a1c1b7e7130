package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// The floor server is the trivial reference of the comparison: one
// process, no Redis, no Primus, rooms in a map, and a publish writes one
// prebuilt frame to each member with a plain write(2), in member order, on
// the publisher's goroutine. It shows what the machine itself costs (the
// kernel's loopback path, the generator), below which no server can go.
type floorServer struct {
	mu    sync.Mutex
	rooms map[string][]*floorConn
}

type floorConn struct {
	c   net.Conn
	wmu sync.Mutex
}

func (f *floorConn) write(b []byte) {
	f.wmu.Lock()
	_, _ = f.c.Write(b)
	f.wmu.Unlock()
}

// serveFloor serves the floor server on ln until ctx ends.
func serveFloor(ctx context.Context, ln net.Listener) error {
	s := &floorServer{rooms: map[string][]*floorConn{}}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.serve(c)
	}
}

func (s *floorServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	var key string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
			key = strings.TrimSpace(v)
		}
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fc := &floorConn{c: c}
	fc.write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"))
	var hdr [14]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		op, n := hdr[0]&0x0f, int(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
				return
			}
			n = int(hdr[2])<<8 | int(hdr[3])
		case 127:
			return // the benchmark never sends such frames
		}
		var mask [4]byte
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		maskBytes(p, mask)
		if op == opClose {
			return
		}
		if op == opText {
			s.command(fc, p)
		}
	}
}

var errFloorCommand = errors.New("floor: not a command")

// command handles {"join":"r","ack":1} and {"publish":{"room":"r","data":X}}
// as the benchmark sends them (fixed key order).
func (s *floorServer) command(fc *floorConn, p []byte) {
	if rest, ok := bytes.CutPrefix(p, []byte(`{"join":"`)); ok {
		room, _, _ := bytes.Cut(rest, []byte(`"`))
		s.mu.Lock()
		s.rooms[string(room)] = append(s.rooms[string(room)], fc)
		s.mu.Unlock()
		fc.write(appendServerFrame(nil, []byte(`{"ack":1,"ok":true}`)))
		return
	}
	room, data, err := parsePublish(p)
	if err != nil {
		return
	}
	frame := appendServerFrame(nil, data)
	s.mu.Lock()
	members := s.rooms[string(room)]
	s.mu.Unlock()
	for _, m := range members {
		m.write(frame)
	}
}

func parsePublish(p []byte) (room, data []byte, err error) {
	rest, ok := bytes.CutPrefix(p, []byte(`{"publish":{"room":"`))
	if !ok {
		return nil, nil, errFloorCommand
	}
	room, rest, ok = bytes.Cut(rest, []byte(`","data":`))
	if !ok || !bytes.HasSuffix(rest, []byte("}}")) {
		return nil, nil, errFloorCommand
	}
	return room, rest[:len(rest)-2], nil
}

// appendServerFrame appends an unmasked text frame.
func appendServerFrame(dst, p []byte) []byte {
	n := len(p)
	switch {
	case n <= 125:
		dst = append(dst, 0x80|opText, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|opText, 126, byte(n>>8), byte(n))
	default:
		panic(fmt.Sprintf("floor: frame of %d bytes", n))
	}
	return append(dst, p...)
}
