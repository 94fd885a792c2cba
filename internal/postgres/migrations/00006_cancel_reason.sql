-- +goose Up
-- The reason a cancellation was given (cancelOrder's optional reason),
-- kept with its ORDER_CANCELLED event: the event's data on GET /events and
-- in outbound webhooks carries it. NULL for every other event.
ALTER TABLE order_events ADD COLUMN reason text;

-- +goose Down
ALTER TABLE order_events DROP COLUMN reason;
