-- +goose Up
-- order_total_deltas holds the status counts and spend of all orders (what
-- a STAFF screen shows) as changes, so that reading them does not scan the
-- orders table. Every insert, delete, or change of an order's status,
-- currency or total adds rows here, in the order's transaction (the
-- triggers below): -1 for what the order was, +1 for what it is. Rows are
-- only ever inserted by writers, so concurrent writes never wait for each
-- other here; the sums over the table are the totals, in every snapshot.
-- The store folds the rows into one per (status, currency) every few
-- seconds (Store.CompactOrderTotals).
CREATE TABLE order_total_deltas (
    status   text NOT NULL,
    currency char(3) NOT NULL,
    n        bigint NOT NULL,
    cents    bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000, vacuum_truncate = false);

-- +goose StatementBegin
CREATE FUNCTION order_totals_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO order_total_deltas (status, currency, n, cents) VALUES (OLD.status, OLD.currency, -1, -OLD.total_cents);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO order_total_deltas (status, currency, n, cents) VALUES (NEW.status, NEW.currency, 1, NEW.total_cents);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER orders_totals_insert_delete AFTER INSERT OR DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION order_totals_track();
CREATE TRIGGER orders_totals_update AFTER UPDATE OF status, currency, total_cents ON orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.currency IS DISTINCT FROM NEW.currency
        OR OLD.total_cents IS DISTINCT FROM NEW.total_cents)
    EXECUTE FUNCTION order_totals_track();

-- The totals so far, after the triggers: creating them waited for the
-- writers in flight and keeps new ones out until this migration commits,
-- so every order is counted once, here or by a trigger.
INSERT INTO order_total_deltas (status, currency, n, cents)
SELECT status, currency, count(*), sum(total_cents) FROM orders GROUP BY status, currency;

-- +goose Down
DROP TRIGGER orders_totals_update ON orders;
DROP TRIGGER orders_totals_insert_delete ON orders;
DROP FUNCTION order_totals_track();
DROP TABLE order_total_deltas;
