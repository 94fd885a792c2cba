package cache

import (
	"encoding/json"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec encodes cached values. Values must round-trip through it (exported
// fields only); its Name is part of every entry key.
type Codec interface {
	// Name identifies the encoding, e.g. "json".
	Name() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the pointer v.
	Unmarshal(data []byte, v any) error
}

// JSONCodec encodes with encoding/json.
type JSONCodec struct{}

// Name returns "json".
func (JSONCodec) Name() string { return "json" }

// Marshal encodes v as JSON.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// MsgpackCodec encodes with MessagePack (github.com/vmihailenco/msgpack/v5),
// structs as maps keyed by field name (robust to reordered fields).
type MsgpackCodec struct{}

// Name returns "msgpack".
func (MsgpackCodec) Name() string { return "msgpack" }

// Marshal encodes v as MessagePack.
func (MsgpackCodec) Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes MessagePack data into v.
func (MsgpackCodec) Unmarshal(data []byte, v any) error { return msgpack.Unmarshal(data, v) }
