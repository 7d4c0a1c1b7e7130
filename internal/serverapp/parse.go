package serverapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/primusgo/primus"
)

// limits bound the lists a command may carry, so that a hostile message
// is refused after its first entries over the bound rather than decoded
// whole (a 10 MB list of short names is a million strings). 0: no bound.
type limits struct {
	join, publish, except int
}

// parseCommand decodes a command object with a streaming tokenizer rather
// than encoding/json's reflection: commands are the hot path of every
// client message. Field names are exact (case-sensitive); unknown fields
// are ignored; a field given twice counts once, the last time. raw must be
// one JSON object (the server has validated the JSON).
func parseCommand(raw []byte, lim limits) (command, error) {
	var cmd command
	d := getDecoder(raw)
	defer putDecoder(d)
	dec := &d.dec
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return cmd, errors.New("a command is a JSON object")
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return cmd, err
		}
		switch name.String() {
		case "join":
			cmd.Join, err = readRooms(dec, "join", lim.join)
		case "leave":
			cmd.Leave, err = readRooms(dec, "leave", lim.join)
		case "leaveAll":
			cmd.LeaveAll, err = readBool(dec, "leaveAll")
		case "publish":
			cmd.Publish, err = readPublish(dec, lim, false)
		case "ack":
			cmd.Ack, err = readRaw(dec)
		case "recover":
			cmd.Recover, err = readBool(dec, "recover")
		case "since":
			cmd.Since, err = readSince(dec) // history.go
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return cmd, err
		}
	}
	return cmd, nil
}

// ackOf returns the ack of a command object, or nil, whatever its other
// fields hold (a malformed command still gets its answer).
func ackOf(raw []byte) json.RawMessage {
	d := getDecoder(raw)
	defer putDecoder(d)
	dec := &d.dec
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil
	}
	var ack json.RawMessage
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return ack
		}
		if name.String() == "ack" {
			if ack, err = readRaw(dec); err != nil {
				return nil
			}
		} else if dec.SkipValue() != nil {
			return ack
		}
	}
	return ack
}

// decoder is a pooled tokenizer reading straight from the message's bytes
// (jsontext does not copy from a bytes.Buffer).
type decoder struct {
	dec jsontext.Decoder
	buf bytes.Buffer
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

func getDecoder(raw []byte) *decoder {
	d := decoders.Get().(*decoder)
	d.buf = *bytes.NewBuffer(raw)
	d.dec.Reset(&d.buf, jsontext.AllowDuplicateNames(true))
	return d
}

func putDecoder(d *decoder) {
	d.buf = bytes.Buffer{}
	d.dec.Reset(&d.buf) // keep no message alive in the pool
	decoders.Put(d)
}

func readRaw(dec *jsontext.Decoder) (json.RawMessage, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(v), nil // v is only valid until the next read
}

func readBool(dec *jsontext.Decoder, field string) (bool, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return false, err
	}
	if k := tok.Kind(); k != 't' && k != 'f' {
		return false, fmt.Errorf("%s must be true or false", field)
	}
	return tok.Bool(), nil
}

// readRooms reads a room name or a list of them (null: none).
func readRooms(dec *jsontext.Decoder, field string, max int) (rooms, error) {
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		return rooms{tok.String()}, nil
	case '[':
		list, err := readStrings(dec, field, max)
		return rooms(list), err
	case 'n':
		_, err := dec.ReadToken()
		return nil, err
	}
	_ = dec.SkipValue()
	return nil, errors.New("a room must be a string or a list of strings")
}

// readStrings reads a list of at most max strings (0: any number; null:
// none), stopping at the first entry over max.
func readStrings(dec *jsontext.Decoder, field string, max int) ([]string, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case '[':
	default:
		return nil, fmt.Errorf("%s must be a list of strings", field)
	}
	list := []string{}
	for dec.PeekKind() != ']' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		if tok.Kind() != '"' {
			return nil, fmt.Errorf("%s must be a list of strings", field)
		}
		if max > 0 && len(list) == max {
			if field == "join" {
				return nil, fmt.Errorf("%w (at most %d)", primus.ErrTooManyRooms, max)
			}
			return nil, fmt.Errorf("%s: more than %d entries", field, max)
		}
		list = append(list, tok.String())
	}
	_, err = dec.ReadToken() // ']'
	return list, err
}

// readPublish reads a publish object; strict refuses unknown fields.
func readPublish(dec *jsontext.Decoder, lim limits, strict bool) (*publishCommand, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case '{':
	default:
		return nil, errors.New("publish must be an object")
	}
	var p publishCommand
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		switch name.String() {
		case "room":
			var t jsontext.Token
			if t, err = dec.ReadToken(); err == nil {
				switch t.Kind() {
				case '"':
					p.Room = t.String()
				case 'n':
					p.Room = ""
				default:
					err = errors.New("room must be a string")
				}
			}
		case "rooms":
			p.Rooms, err = readStrings(dec, "rooms", lim.publish)
		case "except":
			p.Except, err = readStrings(dec, "except", lim.except)
		case "data":
			p.Data, err = readRaw(dec)
		default:
			if strict {
				return nil, fmt.Errorf("unknown field %s", name.String())
			}
			err = dec.SkipValue()
		}
		if err != nil {
			return nil, err
		}
	}
	_, err = dec.ReadToken() // '}'
	return &p, err
}

// parsePublishBody decodes an HTTP publish request as it arrives: one
// publish object, no unknown fields, nothing after it but white space.
func parsePublishBody(r io.Reader, lim limits) (*publishCommand, error) {
	dec := jsontext.NewDecoder(r)
	if dec.PeekKind() != '{' {
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		return nil, errors.New("the body must be a JSON object")
	}
	p, err := readPublish(dec, lim, true)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, errors.New("trailing data after the JSON value")
	}
	return p, nil
}
