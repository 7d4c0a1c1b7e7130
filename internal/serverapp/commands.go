package serverapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/primusgo/primus"
)

// command is a client's room command, sent as a data message:
//
//	{"join":"room"} or {"join":["a","b"]}
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
}

type publishCommand struct {
	Room   string          `json:"room"`
	Rooms  []string        `json:"rooms"`
	Except []string        `json:"except"`
	Data   json.RawMessage `json:"data"`
}

// rooms accepts a room name or a list of them.
type rooms []string

func (r *rooms) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		return json.Unmarshal(b, (*[]string)(r))
	}
	var one string
	if err := json.Unmarshal(b, &one); err != nil {
		return errors.New("a room must be a string or a list of strings")
	}
	*r = rooms{one}
	return nil
}

var errNoCommand = errors.New("unknown command: expected join, leave, leaveAll or publish")

// handleData runs the command in d, if it is one, and acknowledges it.
// Messages that are not JSON objects are ordinary data and ignored.
func (a *App) handleData(s *primus.Spark, d primus.Data) {
	raw := bytes.TrimSpace(d.JSON())
	if len(raw) == 0 || raw[0] != '{' {
		return
	}
	var cmd command
	err := json.Unmarshal(raw, &cmd)
	if err == nil {
		err = a.run(s, &cmd)
		if err == errNoCommand && cmd.Ack == nil {
			return // an object that is not a command: plain data
		}
	} else {
		// A malformed command still gets its answer when its ack is readable.
		var ackOnly struct {
			Ack json.RawMessage `json:"ack"`
		}
		_ = json.Unmarshal(raw, &ackOnly)
		cmd.Ack = ackOnly.Ack
		err = fmt.Errorf("invalid command: %w", err)
	}
	if err != nil {
		a.metrics.commandErrors.Inc()
	}
	if cmd.Ack != nil {
		_ = s.Write(ackReply(cmd.Ack, err))
	}
}

func (a *App) run(s *primus.Spark, cmd *command) error {
	switch {
	case cmd.Join != nil:
		if err := validRooms(cmd.Join); err != nil {
			return err
		}
		return s.Join(cmd.Join...)
	case cmd.Leave != nil:
		return s.Leave(cmd.Leave...)
	case cmd.LeaveAll:
		return s.LeaveAll()
	case cmd.Publish != nil:
		return a.publish(cmd.Publish.Room, cmd.Publish.Rooms, cmd.Publish.Except, cmd.Publish.Data)
	}
	return errNoCommand
}

// publish is the one path for room writes from clients and the HTTP API.
func (a *App) publish(room string, list, except []string, data json.RawMessage) error {
	if room != "" {
		list = append([]string{room}, list...)
	}
	if len(list) == 0 {
		return errors.New("publish needs a room or rooms")
	}
	if err := validRooms(list); err != nil {
		return err
	}
	if data == nil {
		return errors.New("publish needs data")
	}
	a.metrics.publishes.Inc()
	return a.Primus.Room(list...).Except(except...).Write(data)
}

func validRooms(list []string) error {
	if len(list) == 0 {
		return errors.New("no room given")
	}
	for _, r := range list {
		if r == "" {
			return primus.ErrInvalidRoom
		}
	}
	return nil
}

func ackReply(ack json.RawMessage, err error) json.RawMessage {
	b := append([]byte(`{"ack":`), ack...)
	if err != nil {
		msg, _ := json.Marshal(err.Error())
		b = append(append(append(b, `,"error":`...), msg...), '}')
	} else {
		b = append(b, `,"ok":true}`...)
	}
	return b
}
