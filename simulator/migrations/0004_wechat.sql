-- The fake WeChat Pay channel: orders, refunds, payment-notification deliveries and their
-- attempts, and T+1 settlements. Times are virtual-clock microseconds; money integer fen.

CREATE TABLE wechat_orders (
    mchid          TEXT    NOT NULL,
    out_trade_no   TEXT    NOT NULL,
    appid          TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    notify_url     TEXT    NOT NULL,
    total_fen      INTEGER NOT NULL CHECK (total_fen > 0),
    attach         TEXT,
    -- The create request's content, to tell a repeat (same answer) from a conflict.
    fingerprint    TEXT    NOT NULL,
    code_url       TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('NOTPAY', 'SUCCESS', 'CLOSED', 'REFUND')),
    created_us     INTEGER NOT NULL,
    closed_us      INTEGER,
    -- Filled when the user pays.
    transaction_id TEXT    UNIQUE,
    openid         TEXT,
    bank_type      TEXT,
    success_us     INTEGER,
    bill_date      TEXT,            -- WeChat day of the payment (wechat.cutover)
    fee_fen        INTEGER,
    fee_rate       TEXT,
    notify_fault   TEXT,            -- which rule or rate shaped the notification, if any
    PRIMARY KEY (mchid, out_trade_no)
) WITHOUT ROWID;
CREATE INDEX wechat_orders_bill ON wechat_orders(mchid, bill_date);

CREATE TABLE wechat_refunds (
    mchid         TEXT    NOT NULL,
    out_refund_no TEXT    NOT NULL,
    out_trade_no  TEXT    NOT NULL,
    refund_id     TEXT    NOT NULL UNIQUE,
    amount_fen    INTEGER NOT NULL CHECK (amount_fen > 0),
    refunded_us   INTEGER NOT NULL,
    bill_date     TEXT    NOT NULL,
    PRIMARY KEY (mchid, out_refund_no),
    FOREIGN KEY (mchid, out_trade_no) REFERENCES wechat_orders(mchid, out_trade_no)
) WITHOUT ROWID;
CREATE INDEX wechat_refunds_bill ON wechat_refunds(mchid, bill_date);

-- One row per notification the channel owes a platform (a duplicated one is two rows).
-- state: scheduled (next attempt waits for its job), due (the dispatcher sends it),
-- delivered, exhausted (the retry schedule ran out), dropped (never sent: 掉单).
CREATE TABLE wechat_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT    NOT NULL UNIQUE,
    mchid           TEXT    NOT NULL,
    out_trade_no    TEXT    NOT NULL,
    copy_no         INTEGER NOT NULL DEFAULT 1,
    ignore_answer   INTEGER NOT NULL DEFAULT 0,
    resource        TEXT    NOT NULL,  -- the transaction JSON as at payment
    state           TEXT    NOT NULL CHECK (state IN ('scheduled', 'due', 'delivered', 'exhausted', 'dropped')),
    next_attempt    INTEGER NOT NULL DEFAULT 1,
    next_due_us     INTEGER,
    created_us      INTEGER NOT NULL,
    FOREIGN KEY (mchid, out_trade_no) REFERENCES wechat_orders(mchid, out_trade_no)
);
CREATE INDEX wechat_deliveries_due ON wechat_deliveries(state, next_due_us, id);

CREATE TABLE wechat_attempts (
    delivery_id INTEGER NOT NULL REFERENCES wechat_deliveries(id),
    attempt     INTEGER NOT NULL,
    due_us      INTEGER NOT NULL,
    sent_us     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('SUCCESS', 'FAILED', 'IGNORED')),
    http_status INTEGER,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

CREATE TABLE wechat_settlements (
    mchid       TEXT    NOT NULL,
    bill_date   TEXT    NOT NULL,
    app_id      TEXT    NOT NULL,
    orders      INTEGER NOT NULL,
    gross_fen   INTEGER NOT NULL,
    fees_fen    INTEGER NOT NULL,
    refunds_fen INTEGER NOT NULL,
    net_fen     INTEGER NOT NULL,
    txn_id      INTEGER REFERENCES txns(id),  -- NULL when net <= 0: nothing posted
    settled_us  INTEGER NOT NULL,
    PRIMARY KEY (mchid, bill_date)
) WITHOUT ROWID;
