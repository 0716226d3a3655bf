package signaling

import _ "embed" // the protocol's JSON Schema

// Schema is protocol.schema.json, the machine-readable form of PROTOCOL.md
// (JSON Schema draft 2020-12): what a client sends is valid against
// "#/$defs/clientMessage", what the server sends against
// "#/$defs/serverMessage". Tests hold the server, the Go client and the
// browser client to it.
//
//go:embed protocol.schema.json
var Schema []byte

// SchemaID is the schema's $id, the base its $defs are addressed from.
const SchemaID = "urn:medcall:signaling:v1"
