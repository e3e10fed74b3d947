-- Bank core: key/value settings, the scheduler's jobs, the ledger, idempotency, replay
-- protection and the event timeline. Times are integer microseconds since the Unix epoch
-- (virtual clock time unless the column says wall); money is integer fen.

CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    due_us     INTEGER NOT NULL,
    payload    TEXT    NOT NULL DEFAULT '{}',
    dedupe_key TEXT    UNIQUE,
    state      TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    created_us INTEGER NOT NULL,
    ran_us     INTEGER,
    error      TEXT
);
CREATE INDEX jobs_pending ON jobs(state, due_us, id);

CREATE TABLE accounts (
    account_no        TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL CHECK (kind IN ('INTERNAL', 'SUPERVISION', 'SETTLEMENT', 'CLASS_III')),
    app_id            TEXT,
    name              TEXT    NOT NULL,
    id_number         TEXT,
    mobile            TEXT,
    bound_card_number TEXT,
    bound_card_kind   TEXT,
    status            TEXT    NOT NULL CHECK (status IN ('PENDING_IMAGES', 'ACTIVE', 'CLOSED')),
    frozen            INTEGER NOT NULL DEFAULT 0,  -- bits: 1 platform, 2 bank
    balance_fen       INTEGER NOT NULL DEFAULT 0,
    allow_negative    INTEGER NOT NULL DEFAULT 0,
    balance_cap_fen   INTEGER,
    opening_serial    TEXT,
    opened_us         INTEGER NOT NULL,
    closed_us         INTEGER
) WITHOUT ROWID;
-- Only the per-ID account limit needs a secondary index; every index is a page more
-- written per opening.
CREATE INDEX accounts_id_number ON accounts(id_number);

CREATE TABLE txns (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    at_us         INTEGER NOT NULL,
    business_date TEXT    NOT NULL,
    app_id        TEXT,
    ref           TEXT,
    memo          TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE postings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    txn_id     INTEGER NOT NULL REFERENCES txns(id),
    account_no TEXT    NOT NULL REFERENCES accounts(account_no),
    amount_fen INTEGER NOT NULL CHECK (amount_fen <> 0)
);
CREATE INDEX postings_account ON postings(account_no, id);
CREATE INDEX postings_txn ON postings(txn_id);

-- Postings are immutable: the ledger only ever appends.
CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are immutable'); END;
CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are immutable'); END;

-- Outflow usage per account and period ('D:2026-11-23' for a business day, 'Y:2026').
CREATE TABLE outflows (
    account_no TEXT    NOT NULL REFERENCES accounts(account_no),
    period     TEXT    NOT NULL,
    used_fen   INTEGER NOT NULL,
    PRIMARY KEY (account_no, period)
);

CREATE TABLE refunds (
    app_id        TEXT    NOT NULL,
    serial        TEXT    NOT NULL,
    account_no    TEXT    NOT NULL,
    amount_fen    INTEGER NOT NULL,
    txn_id        INTEGER NOT NULL REFERENCES txns(id),
    bound_card    TEXT    NOT NULL,
    at_us         INTEGER NOT NULL,
    PRIMARY KEY (app_id, serial)
);

-- The original answer to every mutating request, by the platform's request serial.
CREATE TABLE idempotency (
    app_id      TEXT    NOT NULL,
    serial      TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status_code INTEGER NOT NULL,
    response    TEXT    NOT NULL,
    created_us  INTEGER NOT NULL,
    PRIMARY KEY (app_id, serial)
) WITHOUT ROWID;

CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us  INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    app_id TEXT,
    ref    TEXT,
    detail TEXT    NOT NULL DEFAULT '{}'
);
