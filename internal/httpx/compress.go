package httpx

import (
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
)

// CompressOptions configures [Compress].
type CompressOptions struct {
	// MinBytes is the smallest body that is compressed (COMPRESS_MIN_BYTES);
	// 0 turns compression off.
	MinBytes int
}

// compressedTypes are the content types worth compressing: GraphQL
// responses, error bodies and the web app's text files.
var compressedTypes = []string{"application/json", "application/graphql-response+json", "text/html",
	"text/css", "text/javascript", "application/javascript", "image/svg+xml", "text/plain"}

// Compress compresses responses of the compressedTypes that reach
// opts.MinBytes with the encoding the client accepts (Accept-Encoding:
// zstd preferred, then gzip; klauspost/compress), and adds
// Vary: Accept-Encoding. Event streams pass through untouched, so every
// event is flushed to the client as it is written: a compressor would hold
// the headers and the first events until its buffer fills.
func Compress(opts CompressOptions) (Middleware, error) {
	if opts.MinBytes <= 0 {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	wrap, err := gzhttp.NewWrapper(gzhttp.MinSize(opts.MinBytes), gzhttp.ContentTypes(compressedTypes))
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		compressed := wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if streaming(r) {
				next.ServeHTTP(w, r)
				return
			}
			compressed.ServeHTTP(w, r)
		})
	}, nil
}

// streaming reports whether r asks for a long-lived or incremental
// response: GET /events, graphql-sse, multipart subscriptions or @defer.
func streaming(r *http.Request) bool {
	if IsStream(r) {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/event-stream") || strings.Contains(accept, "multipart/mixed")
}
