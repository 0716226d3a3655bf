package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Field names are matched exactly: encoding/json alone would accept "TYPE"
// for "type" and "Id" for "id", which PROTOCOL.md does not allow.
var (
	messageFields   = jsonFields(reflect.TypeOf(Message{}))
	candidateFields = set("candidate", "sdpMid", "sdpMLineIndex", "usernameFragment")
	// requestFields are the fields each client request may carry.
	requestFields = map[string]map[string]bool{
		TypeJoin:      set("type", "id", "token", "consultation", "resume"),
		TypeOffer:     set("type", "id", "pc", "sdp"),
		TypeAnswer:    set("type", "id", "pc", "sdp"),
		TypeCandidate: set("type", "id", "pc", "candidate"),
		TypeMedia:     set("type", "id", "audio", "video", "path"),
		TypeLeave:     set("type", "id"),
		TypePing:      set("type", "id"),
		TypeRestart:   set("type", "id", "pc"),
	}
)

// RequestFields lists the fields a client request of type typ may carry
// (nil for a type that is not a client request).
func RequestFields(typ string) []string {
	var out []string
	for f := range requestFields[typ] {
		out = append(out, f)
	}
	return out
}

func set(names ...string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		out[strings.Split(t.Field(i).Tag.Get("json"), ",")[0]] = true
	}
	return out
}

// requestID returns the id a frame carries, if it is one object whose "id"
// (spelt exactly so) is a well-formed request id, so that even a refused
// frame's error can answer its request. Anything else gives "".
func requestID(data []byte) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(obj["id"], &id) != nil || !validRequestID(id) {
		return ""
	}
	return id
}

func validRequestID(id string) bool { return id != "" && len(id) <= 64 }

// errBadRequestID refuses an "id" that is present but not 1 to 64 characters.
var errBadRequestID = errors.New("id must be a string of 1 to 64 characters")

// decode reads one frame as a Message: one JSON object, every field name
// known and spelt exactly, every value of its field's type.
func decode(data []byte) (Message, error) {
	var m Message
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return m, fmt.Errorf("not one JSON object: %v", err)
	}
	if err := exactFields(obj, messageFields, ""); err != nil {
		return m, err
	}
	if c, ok := obj["candidate"]; ok && !bytes.Equal(bytes.TrimSpace(c), []byte("null")) {
		var cobj map[string]json.RawMessage
		if err := json.Unmarshal(c, &cobj); err != nil {
			return m, errors.New(`field "candidate" must be an object`)
		}
		if err := exactFields(cobj, candidateFields, "candidate."); err != nil {
			return m, err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, err
	}
	if _, ok := obj["id"]; ok && !validRequestID(m.ID) {
		return m, errBadRequestID
	}
	if known := requestFields[m.Type]; known != nil {
		if err := exactFields(obj, known, ""); err != nil {
			return m, fmt.Errorf("%s: %w", m.Type, err)
		}
	}
	return m, nil
}

func exactFields(obj map[string]json.RawMessage, known map[string]bool, prefix string) error {
	for k := range obj {
		if !known[k] {
			return fmt.Errorf("unknown field %q (field names are exact and each request has its own; see PROTOCOL.md)", prefix+k)
		}
	}
	return nil
}
