-- +goose Up
-- webhook_endpoints are the downstream receivers of order events (outbound
-- webhooks), managed by staff. secret signs every delivery; during a
-- rotation previous_secret signs too, until previous_expires_at.
CREATE TABLE webhook_endpoints (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url                 text NOT NULL,
    description         text NOT NULL DEFAULT '',
    event_types         text[] NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    -- disabled_reason says why the endpoint was disabled automatically.
    disabled_reason     text,
    -- failing_since is the first failed attempt after the last success.
    failing_since       timestamptz,
    secret              text NOT NULL,
    previous_secret     text,
    previous_expires_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- webhook_deliveries is the outbox of outbound webhooks: one row per event
-- and subscribed endpoint, written in the transaction of the event (the
-- trigger below), so no event commits without its deliveries and none is
-- written for a change that rolls back. The event is referenced by
-- (order_id, order_version), which is unique and known when the event is
-- inserted; its id (the webhook-id) and body are read from order_events
-- when it is sent.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    order_id        uuid NOT NULL,
    order_version   integer NOT NULL,
    event_type      text NOT NULL,
    -- pending: to send (or being sent, while next_attempt_at is a lease);
    -- delivered: a 2xx answer; failed: a final refusal (4xx other than
    -- 408 and 429); dead: retried for the whole retry window (dead letter).
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- lease_until is set while a sender holds the delivery.
    lease_until     timestamptz,
    -- retry_from starts the retry window (creation, or a redelivery).
    retry_from      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    event_at        timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (endpoint_id, order_id, order_version)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, order_id, order_version) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);

-- webhook_attempts is the history of the sends of a delivery.
CREATE TABLE webhook_attempts (
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status      integer,
    error       text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- webhook_fanout writes the deliveries of an event for every enabled
-- endpoint subscribed to its type, in the event's transaction.
-- +goose StatementBegin
CREATE FUNCTION webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, order_id, order_version, event_type, event_at)
    SELECT e.id, NEW.order_id, NEW.version, NEW.type, NEW.at
    FROM webhook_endpoints e
    WHERE e.enabled AND NEW.type = ANY (e.event_types);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER order_events_webhook_fanout AFTER INSERT ON order_events
    FOR EACH ROW EXECUTE FUNCTION webhook_fanout();

-- +goose Down
DROP TRIGGER order_events_webhook_fanout ON order_events;
DROP FUNCTION webhook_fanout();
DROP TABLE webhook_attempts, webhook_deliveries, webhook_endpoints;
