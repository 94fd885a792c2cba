package cache

import (
	"encoding/binary"
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

// bytesDecoder is a Codec that can decode an encoded []byte without
// copying it: the slice it returns aliases data.
type bytesDecoder interface {
	decodeBytes(data []byte) ([]byte, bool)
}

// decodeBytes returns the bytes a MessagePack bin (or nil) in data holds,
// aliasing data; false when data is anything else, or has trailing bytes.
func (MsgpackCodec) decodeBytes(data []byte) ([]byte, bool) {
	if len(data) == 0 {
		return nil, false
	}
	var n, head int
	switch data[0] {
	case 0xc0: // nil
		return nil, len(data) == 1
	case 0xc4: // bin 8
		if len(data) < 2 {
			return nil, false
		}
		n, head = int(data[1]), 2
	case 0xc5: // bin 16
		if len(data) < 3 {
			return nil, false
		}
		n, head = int(binary.BigEndian.Uint16(data[1:])), 3
	case 0xc6: // bin 32
		if len(data) < 5 {
			return nil, false
		}
		n, head = int(binary.BigEndian.Uint32(data[1:])), 5
	default:
		return nil, false
	}
	if len(data)-head != n {
		return nil, false
	}
	return data[head:len(data):len(data)], true
}
