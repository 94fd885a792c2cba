-- +goose Up
-- The W3C traceparent of the request that queued a charge job, so the
-- worker's span continues that request's trace.
ALTER TABLE charge_jobs ADD COLUMN traceparent text;

-- +goose Down
ALTER TABLE charge_jobs DROP COLUMN traceparent;
