"""The platform store's schema: numbered migrations, applied in order, never edited once shipped.

Kept as Python strings (not ``.sql`` files) so they ship with the package without package
data. Money is integer fen; times are ISO 8601 text with the +08:00 offset.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: users, orders, the wallet journal, reconciliation, batches and their records, files.
    """
    CREATE TABLE users (
        user_id            TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        id_number          TEXT NOT NULL,
        mobile             TEXT NOT NULL,
        bound_card_number  TEXT NOT NULL,
        bound_card_kind    TEXT NOT NULL,
        created_at         TEXT NOT NULL,
        open_serial        TEXT UNIQUE,
        account_no         TEXT UNIQUE,
        account_status     TEXT,
        image_status       TEXT,
        image_reason       TEXT,
        open_code          TEXT,
        open_message       TEXT
    );
    -- The current wallet figures; always equal to the journal's sums (checked by check-balances).
    CREATE TABLE wallets (
        user_id        TEXT PRIMARY KEY REFERENCES users(user_id),
        in_transit     INTEGER NOT NULL DEFAULT 0,
        cash_available INTEGER NOT NULL DEFAULT 0,
        cash_frozen    INTEGER NOT NULL DEFAULT 0
    );
    -- Append-only: one row per movement of one bucket. (kind, ref, bucket) is unique, so a
    -- movement retried after a crash or a duplicated notification is never applied twice.
    CREATE TABLE journal (
        entry_id  INTEGER PRIMARY KEY,
        user_id   TEXT    NOT NULL REFERENCES users(user_id),
        at        TEXT    NOT NULL,
        kind      TEXT    NOT NULL,
        bucket    TEXT    NOT NULL CHECK (bucket IN ('in_transit', 'cash_available', 'cash_frozen')),
        amount    INTEGER NOT NULL,
        ref       TEXT    NOT NULL,
        memo      TEXT    NOT NULL DEFAULT '',
        UNIQUE (kind, ref, bucket)
    );
    CREATE TRIGGER journal_append_only_u BEFORE UPDATE ON journal
        BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
    CREATE TRIGGER journal_append_only_d BEFORE DELETE ON journal
        BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
    CREATE TABLE orders (
        out_trade_no   TEXT PRIMARY KEY,
        user_id        TEXT    NOT NULL REFERENCES users(user_id),
        amount         INTEGER NOT NULL CHECK (amount > 0),
        created_at     TEXT    NOT NULL,
        code_url       TEXT,
        state          TEXT    NOT NULL DEFAULT 'NOTPAY',
        transaction_id TEXT UNIQUE,
        success_time   TEXT,
        bill_date      TEXT,
        credited_via   TEXT,
        credited_at    TEXT
    );
    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY,
        received_at     TEXT NOT NULL,
        notification_id TEXT,
        out_trade_no    TEXT,
        transaction_id  TEXT,
        outcome         TEXT NOT NULL,
        http_status     INTEGER NOT NULL,
        detail          TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE recon_runs (
        bill_date    TEXT PRIMARY KEY,
        state        TEXT NOT NULL,
        ran_at       TEXT NOT NULL,
        bill_sha1    TEXT,
        rows         INTEGER NOT NULL DEFAULT 0,
        matched      INTEGER NOT NULL DEFAULT 0,
        differences  INTEGER NOT NULL DEFAULT 0,
        -- The bill's figures: what WeChat will settle into the 98 account on T+1.
        bill_gross   INTEGER,
        bill_fees    INTEGER,
        bill_refunds INTEGER,
        error        TEXT,
        approved_by  TEXT,
        approved_at  TEXT
    );
    CREATE TABLE recon_items (
        bill_date       TEXT NOT NULL,
        out_trade_no    TEXT NOT NULL,
        kind            TEXT NOT NULL,
        bill_amount     INTEGER,
        platform_amount INTEGER,
        transaction_id  TEXT,
        status          TEXT NOT NULL,
        resolution      TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (bill_date, out_trade_no, kind)
    );
    CREATE TABLE batches (
        batch_no      INTEGER PRIMARY KEY,
        kind          TEXT    NOT NULL CHECK (kind IN ('DF', 'DK')),
        for_date      TEXT    NOT NULL,
        business_date TEXT    NOT NULL,
        file_name     TEXT    NOT NULL UNIQUE,
        content       BLOB    NOT NULL,
        record_count  INTEGER NOT NULL,
        total         INTEGER NOT NULL,
        state         TEXT    NOT NULL,
        created_at    TEXT    NOT NULL,
        uploaded_at   TEXT,
        returned_at   TEXT,
        reply_file    TEXT,
        reject_code   TEXT,
        reject_reason TEXT,
        upload_error  TEXT
    );
    CREATE TABLE batch_records (
        record_id    INTEGER PRIMARY KEY,
        batch_no     INTEGER NOT NULL REFERENCES batches(batch_no),
        seq          INTEGER NOT NULL,
        serial       TEXT    NOT NULL UNIQUE,
        original_id  INTEGER REFERENCES batch_records(record_id),
        kind         TEXT    NOT NULL,
        source_ref   TEXT    NOT NULL,
        user_id      TEXT    NOT NULL REFERENCES users(user_id),
        account_no   TEXT    NOT NULL,
        account_name TEXT    NOT NULL,
        amount       INTEGER NOT NULL,
        memo         TEXT    NOT NULL DEFAULT '',
        state        TEXT    NOT NULL DEFAULT 'WAITING',
        code         TEXT,
        reason       TEXT,
        bank_serial  TEXT,
        finished_at  TEXT,
        resent       INTEGER NOT NULL DEFAULT 0,
        flag         TEXT,
        UNIQUE (batch_no, seq)
    );
    -- The originals of a kind have one row per source (a top-up or a consumption).
    CREATE UNIQUE INDEX one_original_per_source ON batch_records(kind, source_ref)
        WHERE original_id IS NULL;
    -- A record never succeeds twice: at most one success per original record.
    CREATE UNIQUE INDEX one_success_per_original ON batch_records(coalesce(original_id, record_id))
        WHERE state = 'SUCCESS';
    CREATE TABLE seen_files (
        name       TEXT NOT NULL,
        sha1       TEXT NOT NULL,
        seen_at    TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        PRIMARY KEY (name, sha1)
    );
    CREATE TABLE alerts (
        alert_id  INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        kind      TEXT NOT NULL,
        ref       TEXT NOT NULL,
        message   TEXT NOT NULL,
        UNIQUE (kind, ref)
    );
    CREATE TABLE consumptions (
        consumption_id TEXT PRIMARY KEY,
        user_id        TEXT    NOT NULL REFERENCES users(user_id),
        amount         INTEGER NOT NULL CHECK (amount > 0),
        at             TEXT    NOT NULL,
        day            TEXT    NOT NULL,
        memo           TEXT    NOT NULL DEFAULT ''
    );
    CREATE TABLE refunds (
        serial      TEXT PRIMARY KEY,
        user_id     TEXT    NOT NULL REFERENCES users(user_id),
        account_no  TEXT    NOT NULL,
        amount      INTEGER NOT NULL CHECK (amount > 0),
        state       TEXT    NOT NULL,
        code        TEXT,
        message     TEXT,
        created_at  TEXT    NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
)
