-- Files are published only after the work they describe has committed: a row here says
-- "this file is owed"; `published` flips once it is on disk under its final name. A crash
-- in between is recovered at start by publishing again (the files are deterministic).
ALTER TABLE batches ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rejections ADD COLUMN published INTEGER NOT NULL DEFAULT 0;

CREATE TABLE statements (
    app_id        TEXT    NOT NULL,
    account_no    TEXT    NOT NULL,
    business_date TEXT    NOT NULL,
    published     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_no, business_date)
) WITHOUT ROWID;

CREATE INDEX batches_unpublished ON batches(app_id, batch_no) WHERE state = 'RETURNED' AND published = 0;
CREATE INDEX rejections_unpublished ON rejections(id) WHERE published = 0;
CREATE INDEX statements_unpublished ON statements(account_no) WHERE published = 0;
