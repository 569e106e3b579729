-- 001_init.sql: the distributed mode's system of record (PostgreSQL 15).
-- Applied by `catraca migrate`; the binary embeds every sql/NNN_*.sql file, applies the
-- missing ones in order, each in its own transaction, and records them in catraca_migrations.
-- Rows mirror src/store/store.h. Unsigned 64-bit ids are stored as bigint (the same bits).

CREATE TABLE events (
    id           text PRIMARY KEY,
    spec         bytea    NOT NULL, -- codec CREATE_EVENT record, secret included: never served
    state        smallint NOT NULL, -- enum engine_sale_state
    counts       bytea    NOT NULL, -- per category: six little-endian uint32 counters
    offset_major bigint   NOT NULL,
    offset_minor bigint   NOT NULL,
    updated_ms   bigint   NOT NULL
);

CREATE TABLE purchases (
    id                 bigint PRIMARY KEY,
    event              text     NOT NULL,
    customer           text     NOT NULL,
    category           text     NOT NULL,
    quantity           integer  NOT NULL,
    seq_major          bigint   NOT NULL,
    seq_minor          bigint   NOT NULL,
    created_ms         bigint   NOT NULL,
    status             smallint NOT NULL, -- enum engine_status
    reason             smallint NOT NULL, -- enum engine_reason
    hold_expires_at_ms bigint   NOT NULL,
    position           integer  NOT NULL,
    tickets            bytea,             -- ticket codes, 8 little-endian bytes each
    updated_ms         bigint   NOT NULL
);
CREATE INDEX purchases_by_event ON purchases (event, status);
-- Position of a waiting purchase = waiting purchases of its category with a smaller seq.
CREATE INDEX purchases_in_line ON purchases (event, category, status, seq_major, seq_minor);

-- The engine's answer to a command someone may wait for (confirm, cancel, event changes).
CREATE TABLE answers (
    event       text     NOT NULL,
    seq_major   bigint   NOT NULL,
    seq_minor   bigint   NOT NULL,
    purchase_id bigint,
    type        smallint NOT NULL,
    result      smallint NOT NULL,
    reason      smallint NOT NULL,
    status      smallint NOT NULL,
    PRIMARY KEY (event, seq_major, seq_minor)
);

-- One row per partition (event): committed offset, snapshot, and ownership.
-- epoch is the fencing token: a worker acquiring the lease bumps it, and every batch commit
-- checks it in the same transaction (catraca_fence), so a worker that lost its lease while
-- paused can never commit.
CREATE TABLE partitions (
    event          text PRIMARY KEY,
    offset_major   bigint NOT NULL DEFAULT 0,
    offset_minor   bigint NOT NULL DEFAULT 0,
    epoch          bigint NOT NULL DEFAULT 0,
    owner          text,
    lease_until    timestamptz,
    snapshot       bytea,
    snapshot_major bigint,
    snapshot_minor bigint
);

-- Live workers (heartbeats), so free partitions are spread: each takes ceil(partitions / live).
CREATE TABLE workers (
    id      text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- Locks the partition row and raises SQLSTATE CF001 unless the caller's epoch is current.
-- Epoch 0 means "no leases in use" and is accepted only while nobody ever took a lease.
CREATE FUNCTION catraca_fence(p_event text, p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    current_epoch bigint;
BEGIN
    SELECT epoch INTO current_epoch FROM partitions WHERE event = p_event FOR UPDATE;
    IF NOT FOUND THEN
        IF p_epoch = 0 THEN
            INSERT INTO partitions (event) VALUES (p_event) ON CONFLICT (event) DO NOTHING;
            PERFORM catraca_fence(p_event, p_epoch);
            RETURN;
        END IF;
        current_epoch := 0;
    END IF;
    IF current_epoch <> p_epoch THEN
        RAISE EXCEPTION 'partition % is held under epoch %, not %', p_event, current_epoch, p_epoch
            USING ERRCODE = 'CF001';
    END IF;
END
$$;
