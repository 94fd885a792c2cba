// Package idempotency runs keyed mutations so that a retried request never
// does its work twice (spec/idempotency.md).
//
// One Postgres transaction per mutation request: a transaction-scoped
// advisory lock on (user, key) — not acquired means another request with
// the key is in flight (IN_USE) — then the stored record, if any, is
// replayed (or REUSED when the fingerprint differs); otherwise the
// mutation runs inside the same transaction and its response is stored
// with it, so the effect, its events and the key's record commit together
// or not at all. Transient failures roll back and are not stored. The
// transaction's BEGIN, the lock and the read of the record share one round
// trip, and the record is written in the round trip that writes the
// mutation's events, just before the commit.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Header is the request header carrying the key.
const Header = "Idempotency-Key"

// ReplayedHeader marks a replayed response.
const ReplayedHeader = "Idempotent-Replayed"

// MaxKeyLength is the longest key accepted.
const MaxKeyLength = 255

// ParseKey validates the header value: 1..255 printable ASCII characters.
// present is false when the header is absent.
func ParseKey(value string, present bool) (string, error) {
	if !present {
		return "", nil
	}
	if len(value) < 1 || len(value) > MaxKeyLength {
		return "", keyInvalid()
	}
	for i := 0; i < len(value); i++ {
		if value[i] < 0x20 || value[i] > 0x7e {
			return "", keyInvalid()
		}
	}
	if strings.TrimSpace(value) == "" {
		return "", keyInvalid()
	}
	return value, nil
}

func keyInvalid() error {
	return order.Errorf(order.CodeIdempotencyKeyInvalid, "Idempotency-Key must be 1 to %d printable ASCII characters (send a UUID v4)", MaxKeyLength)
}

// Fingerprint binds a key to its request: sha256 over the operation name,
// the query document as parsed and printed again (so whitespace and
// comments do not matter), and the canonical JSON of the variables
// (object keys sorted, so their order does not matter).
//
// The document is printed without its comments: the parser keeps them in
// the AST, and printing them would make a comment a different request.
func Fingerprint(operationName string, doc *ast.QueryDocument, variables map[string]any) []byte {
	h := sha256.New()
	h.Write([]byte(operationName))
	h.Write([]byte{0})
	var buf bytes.Buffer
	formatter.NewFormatter(&buf).FormatQueryDocument(doc)
	h.Write(buf.Bytes())
	h.Write([]byte{0})
	vars, _ := json.Marshal(canonical(variables))
	h.Write(vars)
	return h.Sum(nil)
}

// canonical normalizes decoded JSON (json.Number to its shortest form) so
// that equal values print equally; encoding/json sorts map keys.
func canonical(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = canonical(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = canonical(e)
		}
		return out
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
	}
	return v
}

// Request is a mutation request as the keeper sees it.
type Request struct {
	// UserID scopes the key; "" for an anonymous request (no key handling).
	UserID string
	// Key is the validated Idempotency-Key, "" when absent.
	Key string
	// Fingerprint of the request (see Fingerprint).
	Fingerprint []byte
}

// Response is a complete HTTP response of a mutation.
type Response struct {
	Status int
	Body   []byte
	// Transient is true when the response carries a failure that a retry
	// may not repeat (UNAVAILABLE, INTERNAL, RATE_LIMITED, IN_USE): it is
	// rolled back and never stored.
	Transient bool
}

// Outcome says what the keeper did, for logs and metrics.
type Outcome string

// Outcomes.
const (
	OutcomeNone     Outcome = ""         // no key
	OutcomeExecuted Outcome = "executed" // ran and stored
	OutcomeReplayed Outcome = "replayed"
	OutcomeReused   Outcome = "reused"
	OutcomeInUse    Outcome = "in_use"
	OutcomeNotSaved Outcome = "not_stored" // ran, transient failure, rolled back
)

// Metrics counts outcomes.
type Metrics interface{ Outcome(o Outcome) }

// Config configures a Keeper.
type Config struct {
	// TTL is how long records live (IDEMPOTENCY_TTL). Default
	// config.DefaultIdempotencyTTL.
	TTL time.Duration
	// OnCommit is called after a mutation transaction commits, before the
	// response is written: it invalidates screens, then publishes events.
	OnCommit func(ctx context.Context, events []order.Event)
	// OnReplay is called before a stored response is replayed, once the
	// key's transaction has ended: the effect it describes may have
	// committed on an instance that stopped before its OnCommit, so the
	// screens it changed are invalidated now (optional; an error fails the
	// request, which the client retries).
	OnReplay func(ctx context.Context) error
	// Metrics, optional.
	Metrics Metrics
	// Logger, optional.
	Logger *slog.Logger
}

// Keeper runs mutation requests in keyed transactions.
type Keeper struct {
	store *postgres.Store
	cfg   Config
}

// New returns a Keeper.
func New(store *postgres.Store, cfg Config) *Keeper {
	if cfg.TTL <= 0 {
		cfg.TTL = config.DefaultIdempotencyTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Keeper{store: store, cfg: cfg}
}

// Run executes exec in one transaction bound to the request's key. It
// returns the response to send and what happened; an error is a failure
// before or after exec (IN_USE, REUSED, UNAVAILABLE) to be sent instead.
func (k *Keeper) Run(ctx context.Context, req Request, exec func(ctx context.Context) Response) (Response, Outcome, error) {
	tx, err := k.store.Begin(ctx)
	if err != nil {
		return Response{}, OutcomeNone, err
	}
	defer tx.Rollback(ctx)
	keyed := req.Key != "" && req.UserID != ""
	if keyed {
		ok, rec, err := tx.ClaimKey(ctx, req.UserID, req.Key)
		if err != nil {
			return Response{}, OutcomeNone, err
		}
		if !ok {
			k.count(OutcomeInUse)
			return Response{}, OutcomeInUse, InUse()
		}
		if rec != nil {
			if !bytes.Equal(rec.Fingerprint, req.Fingerprint) {
				k.count(OutcomeReused)
				return Response{}, OutcomeReused, order.Errorf(order.CodeIdempotencyKeyReused,
					"this Idempotency-Key was used for a different request; use a new key")
			}
			if k.cfg.OnReplay != nil {
				// The record is committed and read: the transaction (and
				// its connection) goes back before settling, which reads
				// Postgres on a connection of its own. Holding one while
				// waiting for another, enough replays at once would take
				// every connection of the pool and wait for each other.
				tx.Rollback(ctx)
				if err := k.cfg.OnReplay(ctx); err != nil {
					return Response{}, OutcomeNone, err
				}
			}
			k.count(OutcomeReplayed)
			return Response{Status: rec.Status, Body: rec.Body}, OutcomeReplayed, nil
		}
	}
	resp := exec(postgres.WithTx(ctx, tx))
	if resp.Transient {
		k.count(OutcomeNotSaved)
		return resp, OutcomeNotSaved, nil
	}
	if keyed {
		tx.SaveKeyRecordAtCommit(req.UserID, req.Key, postgres.KeyRecord{Fingerprint: req.Fingerprint, Status: resp.Status, Body: resp.Body}, k.cfg.TTL)
	}
	if err := tx.Commit(ctx); err != nil {
		return Response{}, OutcomeNone, err
	}
	if k.cfg.OnCommit != nil {
		k.cfg.OnCommit(ctx, tx.Events())
	}
	if !keyed {
		return resp, OutcomeNone, nil
	}
	k.count(OutcomeExecuted)
	return resp, OutcomeExecuted, nil
}

// InUse is the error for a repeat while the first request is in flight.
func InUse() *order.Error {
	return &order.Error{Code: order.CodeIdempotencyKeyInUse,
		Message:    "a request with this Idempotency-Key is still in flight; retry later with the same key",
		Extensions: map[string]any{"retryAfterSeconds": 1}}
}

func (k *Keeper) count(o Outcome) {
	if k.cfg.Metrics != nil {
		k.cfg.Metrics.Outcome(o)
	}
}

// Reap deletes expired records in small batches every interval until ctx
// ends.
func (k *Keeper) Reap(ctx context.Context, interval time.Duration, batch int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := k.store.DeleteExpiredKeys(ctx, batch)
			if err != nil {
				if !errors.Is(ctx.Err(), context.Canceled) {
					k.cfg.Logger.Warn("idempotency reaper", "error", err)
				}
				break
			}
			if n < int64(batch) {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
