-- +goose Up
-- The events table is a queue: every event is written, marked published
-- (a second row version) and pruned within the replay window. Autovacuum's
-- default threshold (a fifth of the table dead) lets thousands of dead
-- rows pile up at its ends, where every screen load looks (the pruning
-- horizon, a customer's newest event): vacuum it after every thousand.
-- Vacuum never truncates it: giving back its empty tail takes a lock that
-- stops every reader and writer of the table (for up to five seconds
-- while they keep it busy), and a queue's tail fills again at once.
ALTER TABLE order_events SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000, vacuum_truncate = false);

-- +goose Down
ALTER TABLE order_events RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold, vacuum_truncate);
