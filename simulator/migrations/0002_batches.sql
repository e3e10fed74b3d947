-- Batch files (代发 disbursement DF, 代扣 withholding DK), their records and outcomes, ID-card
-- images, and withholding agreements. Times are virtual-clock microseconds, money fen.

CREATE TABLE batches (
    app_id         TEXT    NOT NULL,
    batch_no       TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('DF', 'DK')),
    file_name      TEXT    NOT NULL,
    business_date  TEXT    NOT NULL,
    account_no     TEXT    NOT NULL,  -- DF: the 98 account debited; DK: the settlement account credited
    record_count   INTEGER NOT NULL,
    total_fen      INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('ACCEPTED', 'PROCESSED', 'RETURNED')),
    received_us    INTEGER NOT NULL,
    processed_us   INTEGER,
    returned_us    INTEGER,
    success_count  INTEGER NOT NULL DEFAULT 0,
    success_fen    INTEGER NOT NULL DEFAULT 0,
    return_files   TEXT    NOT NULL DEFAULT '[]',  -- JSON list of names written
    file_fault     TEXT,                           -- the file-level fault decided at intake
    PRIMARY KEY (app_id, batch_no)
) WITHOUT ROWID;

CREATE TABLE batch_records (
    app_id       TEXT    NOT NULL,
    batch_no     TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    serial       TEXT    NOT NULL,
    account_no   TEXT    NOT NULL,
    account_name TEXT    NOT NULL,
    amount_fen   INTEGER NOT NULL,
    memo         TEXT    NOT NULL DEFAULT '',
    agreement_no TEXT,
    result       TEXT    CHECK (result IN ('S', 'F')),
    code         TEXT,
    reason       TEXT,
    decided_by   TEXT,     -- which rule, rate or ledger check decided (the manifest)
    bank_serial  TEXT,
    txn_id       INTEGER,
    finished_us  INTEGER,
    PRIMARY KEY (app_id, batch_no, seq)
) WITHOUT ROWID;
-- A serial twice in one file refuses the file (4006); intake relies on this index.
CREATE UNIQUE INDEX batch_records_serial ON batch_records(app_id, batch_no, serial);
-- Record serials are unique per platform across all batches (a re-submission uses new
-- serials and names the original in its memo); a reused serial fails with 3051.
CREATE TABLE record_serials (
    app_id   TEXT NOT NULL,
    serial   TEXT NOT NULL,
    batch_no TEXT NOT NULL,
    PRIMARY KEY (app_id, serial)
) WITHOUT ROWID;

-- Files refused as a whole: the rejection file written for each.
CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      TEXT    NOT NULL,
    file_name   TEXT    NOT NULL,
    batch_no    TEXT,
    code        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    line        INTEGER,
    reject_file TEXT    NOT NULL,
    at_us       INTEGER NOT NULL
);

CREATE TABLE images (
    account_no  TEXT    NOT NULL,
    side        TEXT    NOT NULL CHECK (side IN ('front', 'back')),
    app_id      TEXT    NOT NULL,
    file_name   TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    format      TEXT,
    received_us INTEGER NOT NULL,
    PRIMARY KEY (account_no, side)
) WITHOUT ROWID;

ALTER TABLE accounts ADD COLUMN image_status TEXT NOT NULL DEFAULT 'NONE';
ALTER TABLE accounts ADD COLUMN image_reason TEXT;
-- 代扣协议: signed with the platform at opening; the control API can revoke it.
ALTER TABLE accounts ADD COLUMN withholding_agreement INTEGER NOT NULL DEFAULT 1;
