package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var embedded embed.FS

// CSP is the Content-Security-Policy sent with every response of Handler.
const CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; " +
	"script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// contentTypes pins the types of the files the app ships, independent of the
// host's MIME tables (a wrong JavaScript type stops module scripts loading).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

type file struct {
	body        []byte
	contentType string
	etag        string
}

// Files returns the embedded static files, rooted so that "index.html" is the
// page served at "/".
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		panic(err) // the directory is embedded at compile time
	}
	return sub
}

// Handler serves the app: the embedded files by path, and index.html for "/"
// and for any other path without a file extension (client-side routes).
// Unknown paths with an extension are 404. Every response carries CSP,
// nosniff and a no-referrer policy; files are sent with a strong ETag and
// "Cache-Control: no-cache", so browsers revalidate cheaply (304) and never
// run a stale mix of modules after a deploy.
func Handler() http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = http.DetectContentType(body)
		}
		sum := sha256.Sum256(body)
		files["/"+p] = file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	index := files["/index.html"]

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		f, ok := files[p]
		if !ok {
			if path.Ext(p) != "" || strings.HasPrefix(p, "/js/") || strings.HasPrefix(p, "/css/") {
				http.NotFound(w, r)
				return
			}
			f = index
		}
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}
