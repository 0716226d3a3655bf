package signaltest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/medcall/medcall/signaling"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema validates messages against signaling/protocol.schema.json.
type Schema struct {
	client, server *jsonschema.Schema
}

var (
	schemaOnce sync.Once
	schema     *Schema
	schemaErr  error
)

// LoadSchema compiles the protocol's JSON Schema (once per process).
func LoadSchema() (*Schema, error) {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(signaling.Schema))
		if err != nil {
			schemaErr = fmt.Errorf("protocol.schema.json: %w", err)
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		if err := c.AddResource(signaling.SchemaID, doc); err != nil {
			schemaErr = fmt.Errorf("protocol.schema.json: %w", err)
			return
		}
		s := &Schema{}
		if s.client, err = c.Compile(signaling.SchemaID + "#/$defs/clientMessage"); err != nil {
			schemaErr = fmt.Errorf("protocol.schema.json: clientMessage: %w", err)
			return
		}
		if s.server, err = c.Compile(signaling.SchemaID + "#/$defs/serverMessage"); err != nil {
			schemaErr = fmt.Errorf("protocol.schema.json: serverMessage: %w", err)
			return
		}
		schema = s
	})
	return schema, schemaErr
}

// CheckClient reports whether data is a valid client message.
func (s *Schema) CheckClient(data []byte) error { return check(s.client, "client", data) }

// CheckServer reports whether data is a valid server message.
func (s *Schema) CheckServer(data []byte) error { return check(s.server, "server", data) }

func check(sch *jsonschema.Schema, who string, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s message is not JSON: %w: %s", who, err, data)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s message %s does not follow protocol.schema.json: %v", who, data, err)
	}
	return nil
}

// Violations collects schema violations seen from other goroutines (the
// server's writers, a client's read loop) and reports them when the test
// ends, where t.Errorf is allowed.
type Violations struct {
	mu   sync.Mutex
	errs []error
	seen int
}

// NewViolations reports what it collects as errors of t when t ends.
func NewViolations(t testing.TB) *Violations {
	v := &Violations{}
	t.Cleanup(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		for i, err := range v.errs {
			if i == 10 {
				t.Errorf("... and %d more schema violations", len(v.errs)-10)
				break
			}
			t.Error(err)
		}
	})
	return v
}

// Add records err, if any, and counts one message checked.
func (v *Violations) Add(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen++
	if err != nil {
		v.errs = append(v.errs, err)
	}
}

// Seen is how many messages were checked.
func (v *Violations) Seen() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen
}

// checkServer returns a hook that checks every message the server sends.
func (e *Env) checkServer(t testing.TB) func([]byte) {
	s, err := LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	e.ServerChecked = NewViolations(t)
	return func(b []byte) { e.ServerChecked.Add(s.CheckServer(b)) }
}

// checkReceived returns a hook that holds the server's verdict on every
// frame it read to the schema: a frame the schema accepts is never refused
// for its shape (bad_message, bad_request, unknown_type), and a frame the
// schema refuses is never accepted.
func (e *Env) checkReceived(t testing.TB) func([]byte, string) {
	s, err := LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	e.ClientChecked = NewViolations(t)
	return func(data []byte, refused string) {
		valid := s.CheckClient(data)
		switch {
		case valid == nil && (refused == signaling.CodeBadMessage || refused == signaling.CodeBadRequest || refused == signaling.CodeUnknownType):
			e.ClientChecked.Add(fmt.Errorf("the server refused with %s a frame protocol.schema.json accepts: %s", refused, data))
		case valid != nil && refused == "":
			e.ClientChecked.Add(fmt.Errorf("the server accepted a frame protocol.schema.json refuses: %w", valid))
		default:
			e.ClientChecked.Add(nil)
		}
	}
}

// Trace returns a client.Options.Trace-shaped hook that checks what a client
// sends and receives against the schema, into v.
func Trace(t testing.TB, v *Violations) func(sent bool, data []byte) {
	s, err := LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	return func(sent bool, data []byte) {
		if sent {
			v.Add(s.CheckClient(data))
		} else {
			v.Add(s.CheckServer(data))
		}
	}
}
