-- +goose Up
-- Event positions come from a sequence, drawn by the event insert at the
-- end of the writing transaction (after the customer's row lock, so the
-- positions of one customer follow commit order), without a global lock:
-- transactions that write events commit side by side. Readers hand out a
-- position only once every lower one is final (committed, or a hole left
-- by a transaction that rolled back after drawing it); see
-- internal/stream (the sequencer's horizon).
CREATE SEQUENCE order_events_position_seq OWNED BY order_events.position;
SELECT setval('order_events_position_seq', greatest(position, 1), position > 0) FROM stream_head;
ALTER TABLE order_events ALTER COLUMN position SET DEFAULT nextval('order_events_position_seq');
-- stream_head is no longer locked by writers: brokers record in it the
-- last event position they handed out (a final position, never ahead of
-- the stream), the resume point of a staff screen.
COMMENT ON TABLE stream_head IS 'last event position a broker handed out (all lower positions are final)';

-- +goose Down
UPDATE stream_head SET position = coalesce((SELECT max(position) FROM order_events), 0);
ALTER TABLE order_events ALTER COLUMN position DROP DEFAULT;
DROP SEQUENCE order_events_position_seq;
COMMENT ON TABLE stream_head IS NULL;
