-- +goose Up
CREATE TABLE users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('CUSTOMER', 'STAFF')),
    -- event_seq is the customer's last event sequence number; the row is
    -- locked to assign the next one, which keeps them in commit order.
    event_seq  bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    char(3) NOT NULL,
    image_url   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE order_number_seq START 10001;

CREATE TABLE orders (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number           text NOT NULL UNIQUE DEFAULT ('A-' || nextval('order_number_seq')),
    customer_id      uuid NOT NULL REFERENCES users (id),
    status           text NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    payment_status   text NOT NULL CHECK (payment_status IN ('UNPAID', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'REFUNDED')),
    version          integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    total_cents      bigint NOT NULL CHECK (total_cents >= 0),
    currency         char(3) NOT NULL,
    ship_name        text NOT NULL,
    ship_line1       text NOT NULL,
    ship_line2       text,
    ship_city        text NOT NULL,
    ship_postal_code text NOT NULL,
    ship_country     char(2) NOT NULL,
    tracking_number  text,
    charge_id        text,
    payment_attempt  integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_created ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_customer_status_created ON orders (customer_id, status, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_lines (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    product_id       uuid NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    currency         char(3) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- stream_head holds the last global stream position. Its single row is
-- locked, at the end of every transaction that writes an event, to take
-- the next position: positions are dense and ordered as commits are.
CREATE TABLE stream_head (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint NOT NULL
);
INSERT INTO stream_head (id, position) VALUES (true, 0);

CREATE TABLE order_events (
    position       bigint PRIMARY KEY,
    customer_id    uuid NOT NULL REFERENCES users (id),
    customer_seq   bigint NOT NULL,
    order_id       uuid NOT NULL REFERENCES orders (id),
    type           text NOT NULL,
    from_status    text,
    to_status      text NOT NULL,
    version        integer NOT NULL,
    actor          text NOT NULL,
    status         text NOT NULL,
    payment_status text NOT NULL,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- published_at is set once the event has been fanned out (outbox).
    published_at   timestamptz,
    UNIQUE (customer_id, customer_seq),
    UNIQUE (order_id, version)
);
CREATE INDEX order_events_order ON order_events (order_id, position);
CREATE INDEX order_events_customer ON order_events (customer_id, position);
CREATE INDEX order_events_at ON order_events (at);
CREATE INDEX order_events_unpublished ON order_events (position) WHERE published_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id     uuid NOT NULL REFERENCES users (id),
    key         text NOT NULL,
    fingerprint bytea NOT NULL,
    status      integer NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- charge_jobs is the outbox of charge requests to the payment provider,
-- written in the transaction of payOrder.
CREATE TABLE charge_jobs (
    id           bigserial PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES orders (id),
    attempt      integer NOT NULL,
    amount_cents bigint NOT NULL,
    currency     char(3) NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    tries        integer NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, attempt)
);
CREATE INDEX charge_jobs_due ON charge_jobs (run_at) WHERE state = 'pending';

-- webhook_events deduplicates provider events by their id.
CREATE TABLE webhook_events (
    provider_event_id text PRIMARY KEY,
    type              text NOT NULL,
    order_id          uuid,
    applied           boolean NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE webhook_events, charge_jobs, idempotency_keys, order_events, stream_head, order_lines, orders, products, users;
DROP SEQUENCE order_number_seq;
