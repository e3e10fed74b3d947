-- Batch records at volume. A million-record file must be taken in, decided, posted and
-- returned in seconds, so the per-record rows of 0002 (one batch_records row written at
-- intake and rewritten at processing, two postings and a transaction per record) give
-- way to:
--
-- * batch_chunks: the accepted detail lines, as received (decoded text, "\n" between
--   lines), a few thousand per row. Written once at intake.
-- * batch_results: per chunk, the return file's detail lines for those records (GBK,
--   CRLF: the bytes the return file carries) and which rule or rate decided the records
--   the ledger did not. Written once by processing, in the same transaction as the
--   postings; the return file is these bytes between a header and a trailer.
-- * record_serials now gets a batch's serials at intake (the first batch to bring a
--   serial owns it); a serial another batch already holds is noted in serial_conflicts,
--   so processing can tell, without a lookup per record, which serials an earlier
--   processed batch has used (3051).
-- * a batch's successful records are one ledger transaction: one posting per record on
--   the Class III side and one posting on the platform's own account for their sum. The
--   record's memo moves to its posting (postings.memo, NULL = the transaction's memo).
--
-- Nothing writes batch_records any more; rows an older version left there are moved into
-- chunks when the bank starts (simulator/domain/batchrecords.py, adopt_legacy).

CREATE TABLE batch_chunks (
    id        INTEGER PRIMARY KEY,
    app_id    TEXT    NOT NULL,
    batch_no  TEXT    NOT NULL,
    chunk     INTEGER NOT NULL,  -- 0, 1, ... in file order
    first_seq INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    lines     TEXT    NOT NULL,
    UNIQUE (app_id, batch_no, chunk)
);

CREATE TABLE batch_results (
    id        INTEGER PRIMARY KEY,
    app_id    TEXT    NOT NULL,
    batch_no  TEXT    NOT NULL,
    chunk     INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    lines     BLOB    NOT NULL,
    decided   TEXT    NOT NULL DEFAULT '{}',  -- JSON {seq: rule or rate}; absent = "ledger"
    UNIQUE (app_id, batch_no, chunk)
);

CREATE TABLE serial_conflicts (
    app_id   TEXT    NOT NULL,
    batch_no TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    serial   TEXT    NOT NULL,
    PRIMARY KEY (app_id, batch_no, seq)
) WITHOUT ROWID;
CREATE INDEX serial_conflicts_serial ON serial_conflicts(app_id, serial);

ALTER TABLE postings ADD COLUMN memo TEXT;

-- The batch's ledger transaction (NULL while none of its records succeeded): statements
-- list its one posting on the platform's account record by record, in file order.
ALTER TABLE batches ADD COLUMN txn_id INTEGER REFERENCES txns(id);
