package graph

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// The cache's model version is the hash of the SDL files the BFF serves:
// the files of schema/ as they are on disk (gqlgen embeds them as they
// were at `make generate`; `make check-generated` keeps the two equal).
func TestSchemaVersionIsTheServedSchemasHash(t *testing.T) {
	files, err := filepath.Glob("../schema/*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("schema files: %v %v", files, err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
	}
	want := hex.EncodeToString(h.Sum(nil))[:16]
	if got := SchemaVersion(); got != want {
		t.Fatalf("SchemaVersion() = %q, want the hash of schema/*.graphqls %q", got, want)
	}
}
