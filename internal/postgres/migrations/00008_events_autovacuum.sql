-- +goose Up
-- The events table is a queue: every event is written, marked published
-- (a second row version) and pruned within the replay window. Autovacuum's
-- default threshold (a fifth of the table dead) lets thousands of dead
-- rows pile up at its ends, where every screen load looks (the pruning
-- horizon, a customer's newest event): vacuum it after every thousand.
ALTER TABLE order_events SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000);

-- +goose Down
ALTER TABLE order_events RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold);
