-- +goose Up
-- Planner settings of the BFF's database, for the sessions opened from
-- now on (PgBouncer's server connections included):
--
-- plan_cache_mode = force_generic_plan: every statement of the BFF is
-- prepared once per connection, and its parameters (ids, a customer, a
-- page size) never change which index fits. Left to choose, Postgres
-- replans the statements whose parameters are arrays (the loaders' lines
-- and customers of a set of orders) on every execution, at up to a
-- millisecond of planning each.
--
-- random_page_cost = 1.1: the data is in memory or on SSD, where a random
-- read costs about what a sequential one does; with the default of 4 the
-- planner prefers a sequential scan of a small table (the lines of every
-- order) to a few index probes.
--
-- A role that may not alter the database (it does not own it) leaves the
-- settings to the operator: the migration goes on with a notice. Schemas
-- of one database migrated at once (the tests) take turns: two concurrent
-- ALTER DATABASE of one database fail ("tuple concurrently updated").
-- +goose StatementBegin
DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('bff: database planner settings', 7));
    EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan', current_database());
    EXECUTE format('ALTER DATABASE %I SET random_page_cost = 1.1', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'planner settings not applied to database %: %', current_database(), SQLERRM;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('bff: database planner settings', 7));
    EXECUTE format('ALTER DATABASE %I RESET plan_cache_mode', current_database());
    EXECUTE format('ALTER DATABASE %I RESET random_page_cost', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'planner settings not reset on database %: %', current_database(), SQLERRM;
END
$$;
-- +goose StatementEnd
