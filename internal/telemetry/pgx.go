package telemetry

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// maxQueryText bounds the SQL recorded on a span.
const maxQueryText = 2048

// dbStatementKey is the pre-1.25 semantic-convention name of the query
// text (db.query.text today), still what many trace viewers show.
const dbStatementKey = "db.statement"

// PgxTracer makes a client span for each Postgres query, batch and
// connect. It records the statement text (the store's SQL is
// parameterised: arguments are never recorded), the operation and table,
// the database and server, the rows affected, and errors other than
// pgx.ErrNoRows. Spans are made only under a span of the caller (a
// request, a job): background polling makes none. Set it as
// postgres.Config.Tracer; it wraps another tracer (next), which sees every
// call too.
type PgxTracer struct {
	tracer trace.Tracer
	next   pgx.QueryTracer
}

// NewPgxTracer returns a tracer that also calls next (nil for none),
// including next's BatchTracer and ConnectTracer methods when it has them.
func NewPgxTracer(next pgx.QueryTracer, opts ...Option) *PgxTracer {
	o := newOptions(opts)
	return &PgxTracer{tracer: o.tracer(), next: next}
}

type pgxSpanKey struct{}

func (t *PgxTracer) start(ctx context.Context, name string, attrs ...attribute.KeyValue) context.Context {
	if !hasParent(ctx) {
		return ctx
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrs...))
	return context.WithValue(ctx, pgxSpanKey{}, span)
}

// end ends the span start put in ctx (and nothing else: a missing start
// must not end the caller's span).
func end(ctx context.Context, err error, attrs ...attribute.KeyValue) {
	span, ok := ctx.Value(pgxSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	span.SetAttributes(attrs...)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func connAttrs(conn *pgx.Conn) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL}
	if conn == nil {
		return attrs
	}
	cfg := conn.Config()
	if cfg.Database != "" {
		attrs = append(attrs, semconv.DBNamespace(cfg.Database))
	}
	if cfg.Host != "" {
		attrs = append(attrs, semconv.ServerAddress(cfg.Host))
	}
	if cfg.Port != 0 {
		attrs = append(attrs, semconv.ServerPort(int(cfg.Port)))
	}
	return attrs
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *PgxTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	op, table := summarize(data.SQL)
	text := truncate(data.SQL, maxQueryText)
	attrs := append(connAttrs(conn), semconv.DBQueryText(text), attribute.String(dbStatementKey, text))
	name := "postgresql"
	if op != "" {
		attrs = append(attrs, semconv.DBOperationName(op))
		name = op
		if table != "" {
			attrs = append(attrs, semconv.DBCollectionName(table))
			name += " " + table
		}
	}
	ctx = t.start(ctx, name, attrs...)
	if t.next != nil {
		ctx = t.next.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t *PgxTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, conn, data)
	}
	end(ctx, data.Err, attribute.Int64("db.response.rows_affected", data.CommandTag.RowsAffected()))
}

// TraceBatchStart implements pgx.BatchTracer.
func (t *PgxTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	n := 0
	var sqls []string
	if data.Batch != nil {
		n = data.Batch.Len()
		for _, q := range data.Batch.QueuedQueries {
			sqls = append(sqls, q.SQL)
		}
	}
	text := truncate(strings.Join(sqls, ";\n"), maxQueryText)
	ctx = t.start(ctx, "BATCH", append(connAttrs(conn), semconv.DBOperationName("BATCH"), semconv.DBOperationBatchSize(n),
		semconv.DBQueryText(text), attribute.String(dbStatementKey, text))...)
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		ctx = bt.TraceBatchStart(ctx, conn, data)
	}
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer: each query of the batch is
// an event of the batch span.
func (t *PgxTracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchQuery(ctx, conn, data)
	}
	span, ok := ctx.Value(pgxSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	attrs := []attribute.KeyValue{semconv.DBQueryText(truncate(data.SQL, maxQueryText)),
		attribute.Int64("db.response.rows_affected", data.CommandTag.RowsAffected())}
	if data.Err != nil {
		attrs = append(attrs, attribute.String("error.message", data.Err.Error()))
	}
	span.AddEvent("query", trace.WithAttributes(attrs...))
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t *PgxTracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, conn, data)
	}
	end(ctx, data.Err)
}

// TraceConnectStart implements pgx.ConnectTracer.
func (t *PgxTracer) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL}
	if c := data.ConnConfig; c != nil {
		attrs = append(attrs, semconv.DBNamespace(c.Database), semconv.ServerAddress(c.Host), semconv.ServerPort(int(c.Port)))
	}
	ctx = t.start(ctx, "postgresql.connect", attrs...)
	if ct, ok := t.next.(pgx.ConnectTracer); ok {
		ctx = ct.TraceConnectStart(ctx, data)
	}
	return ctx
}

// TraceConnectEnd implements pgx.ConnectTracer.
func (t *PgxTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if ct, ok := t.next.(pgx.ConnectTracer); ok {
		ct.TraceConnectEnd(ctx, data)
	}
	end(ctx, data.Err)
}

// summarize returns the statement's operation (SELECT, INSERT, …) and, for
// simple statements, its main table. It only looks at keywords, so a
// statement it does not understand gets its first word and no table.
func summarize(sql string) (op, table string) {
	words := strings.Fields(sql)
	if len(words) == 0 {
		return "", ""
	}
	op = strings.ToUpper(words[0])
	if !isWord(op) {
		return "", ""
	}
	after := func(keyword string) string {
		for i := 1; i+1 < len(words); i++ {
			if strings.EqualFold(words[i], keyword) {
				return tableName(words[i+1])
			}
		}
		return ""
	}
	switch op {
	case "SELECT", "DELETE":
		table = after("FROM")
	case "INSERT":
		table = after("INTO")
	case "UPDATE":
		if len(words) > 1 {
			table = tableName(words[1])
		}
	}
	return op, table
}

// tableName keeps an identifier (schema-qualified, quotes removed) and
// drops anything else, such as a sub-select.
func tableName(w string) string {
	w = strings.TrimRight(w, ",;()")
	w = strings.ReplaceAll(w, `"`, "")
	if w == "" || len(w) > 128 {
		return ""
	}
	for _, c := range w {
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	if strings.EqualFold(w, "ONLY") || strings.EqualFold(w, "LATERAL") {
		return ""
	}
	return w
}

func isWord(s string) bool {
	if len(s) > 32 {
		return false
	}
	for _, c := range s {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
