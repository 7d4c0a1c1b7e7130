package serverapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/primusgo/primus"
	"github.com/primusgo/primus/auth"
)

// command is a client's room command, sent as a data message:
//
//	{"join":"room"} or {"join":["a","b"]}
//	{"join":"room","recover":true} or {"join":"room","since":{"offset":N,"epoch":"E"}}
//	                               (history rooms: positioned delivery, see history.go)
//	{"leave":"room"} or {"leave":["a","b"]}
//	{"leaveAll":true}
//	{"publish":{"room":"r","data":X}} or {"publish":{"rooms":["a","b"],"except":["id"],"data":X}}
//
// Any of them may carry "ack":V; the reply is {"ack":V,"ok":true} or
// {"ack":V,"error":"..."}, written after the operation took effect.
type command struct {
	Join     rooms           `json:"join"`
	Leave    rooms           `json:"leave"`
	LeaveAll bool            `json:"leaveAll"`
	Publish  *publishCommand `json:"publish"`
	Ack      json.RawMessage `json:"ack"`
	// Recover and Since ask a join for positioned delivery (history.go).
	Recover bool                    `json:"recover"`
	Since   *primus.HistoryPosition `json:"since"`
	// reply holds the fields a successful command adds to its ack.
	reply []byte
}

type publishCommand struct {
	Room   string          `json:"room"`
	Rooms  []string        `json:"rooms"`
	Except []string        `json:"except"`
	Data   json.RawMessage `json:"data"`
}

// rooms is a room name or a list of them.
type rooms []string

var (
	errNoCommand      = errors.New("unknown command: expected join, leave, leaveAll or publish")
	errPublishOff     = errors.New("client publishing is disabled on this server")
	errForbidden      = errors.New("not allowed")
	errRateLimited    = errors.New("rate limit exceeded: message dropped")
	errPublishNoRooms = errors.New("publish needs a room or rooms")
	errPublishNoData  = errors.New("publish needs data")
)

// handleData runs the command in d, if it is one, and acknowledges it.
// Messages that are not JSON objects are ordinary data and ignored.
func (a *App) handleData(s *primus.Spark, d primus.Data) {
	ack, reply, isCommand, err := a.parseAndRun(s, d)
	if !isCommand {
		return
	}
	if err != nil {
		a.metrics.commandErrors.Inc()
		if errors.Is(err, errForbidden) {
			a.metrics.forbidden.Inc()
		}
	}
	if ack != nil {
		_ = s.Write(ackReply(ack, err, reply))
	}
}

// handleError answers a command the rate limit dropped, when it has an ack.
func (a *App) handleError(s *primus.Spark, err error) {
	var rl *primus.RateLimitError
	if !errors.As(err, &rl) {
		return
	}
	if ack := ackOf(rl.Data.JSON()); ack != nil {
		_ = s.Write(ackReply(ack, errRateLimited, nil))
	}
}

// parseAndRun decodes and runs a command. isCommand is false for data that
// is not one (not an object, or an object without a command and an ack).
func (a *App) parseAndRun(s *primus.Spark, d primus.Data) (ack json.RawMessage, reply []byte, isCommand bool, err error) {
	raw := bytes.TrimSpace(d.JSON())
	if len(raw) == 0 || raw[0] != '{' {
		return nil, nil, false, nil
	}
	cmd, err := parseCommand(raw, a.limits)
	if errors.Is(err, primus.ErrTooManyRooms) {
		return ackOf(raw), nil, true, err // as a Join over the bound says
	}
	if err != nil {
		return ackOf(raw), nil, true, fmt.Errorf("invalid command: %w", err)
	}
	err = a.run(s, &cmd)
	if errors.Is(err, errNoCommand) && cmd.Ack == nil {
		return nil, nil, false, nil // an object that is not a command: plain data
	}
	return cmd.Ack, cmd.reply, true, err
}

func (a *App) run(s *primus.Spark, cmd *command) error {
	switch {
	case cmd.Join != nil:
		if err := a.validRooms(cmd.Join); err != nil {
			return err
		}
		if a.opts.Verifier != nil {
			claims := auth.ClaimsOf(s)
			for _, r := range cmd.Join {
				if !claims.CanJoin(r) {
					return fmt.Errorf("%w to join room %q", errForbidden, r)
				}
			}
		}
		if cmd.Recover || cmd.Since != nil {
			return a.joinRecover(s, cmd) // history.go
		}
		return s.Join(cmd.Join...)
	case cmd.Leave != nil:
		s.Leave(cmd.Leave...)
		return nil
	case cmd.LeaveAll:
		s.LeaveAll()
		return nil
	case cmd.Publish != nil:
		p := cmd.Publish
		if a.opts.ClientPublishOff {
			return errPublishOff
		}
		list := p.rooms()
		if a.opts.Verifier != nil {
			claims := auth.ClaimsOf(s)
			for _, r := range list {
				if !claims.CanPublish(r) {
					return fmt.Errorf("%w to publish to room %q", errForbidden, r)
				}
			}
		}
		return a.publish(list, p.Except, p.Data)
	}
	return errNoCommand
}

// rooms is the publish's room and rooms together.
func (p *publishCommand) rooms() []string {
	if p.Room != "" {
		return append([]string{p.Room}, p.Rooms...)
	}
	return p.Rooms
}

// publish is the one path for room writes from clients and the HTTP API.
func (a *App) publish(list, except []string, data json.RawMessage) error {
	if len(list) == 0 {
		return errPublishNoRooms
	}
	if err := a.validRooms(list); err != nil {
		return err
	}
	if data == nil {
		return errPublishNoData
	}
	a.metrics.publishes.Inc()
	return a.Primus.Room(list...).Except(except...).Write(data)
}

func (a *App) validRooms(list []string) error {
	if len(list) == 0 {
		return errors.New("no room given")
	}
	for _, r := range list {
		if err := a.Primus.ValidateRoom(r); err != nil {
			return err
		}
	}
	return nil
}

// ackReply is {"ack":V,"ok":true<reply>} or {"ack":V,"error":"..."}; reply
// holds the fields a command adds (",\"offset\":...").
func ackReply(ack json.RawMessage, err error, reply []byte) json.RawMessage {
	b := append([]byte(`{"ack":`), ack...)
	if err != nil {
		msg, _ := json.Marshal(err.Error())
		b = append(append(append(b, `,"error":`...), msg...), '}')
	} else {
		b = append(append(append(b, `,"ok":true`...), reply...), '}')
	}
	return b
}
