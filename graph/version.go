package graph

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"
)

// SchemaVersion is a hash of the served schema's SDL (every file of
// schema/, by name): the screen cache keys its entries with it, so that
// entries of another shape, written by a build with another schema, are
// never read after the schema changes.
var SchemaVersion = sync.OnceValue(func() string {
	srcs := append(sources[:0:0], sources...)
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Name < srcs[j].Name })
	h := sha256.New()
	for _, s := range srcs {
		h.Write([]byte(s.Name))
		h.Write([]byte{0})
		h.Write([]byte(s.Input))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
})
