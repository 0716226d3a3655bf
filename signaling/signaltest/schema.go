package signaltest

import (
	"bytes"
	"fmt"
	"sync"

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
