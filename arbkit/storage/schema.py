"""SQLite schema and its migrations (version = ``PRAGMA user_version``).

``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1`` and runs in one
transaction together with the ``user_version`` bump. A released migration is never edited:
change the schema by appending a new one. Documented in ``docs/schema.md``.

Tables are STRICT: an INTEGER column refuses a float, so a unit slip cannot store an
inexact value silently. Dollar and ISO-time columns exist only in the ``v_*`` views.
"""

from __future__ import annotations

_MODES = "('monitor', 'paper', 'live')"
_OUTCOMES = "('yes', 'no')"
# = arbkit.execution.journal.ExecState and arbkit.execution.venue.OrderState values
# (a test keeps them equal; a new value needs a migration).
EXEC_STATES = (
    "intent",
    "leg1_sent",
    "leg2_sent",
    "hedging",
    "done",
    "hedged",
    "unhedged",
    "failed",
)
ORDER_STATES = ("pending", "open", "filled", "cancelled", "rejected", "unknown")
_EXEC_STATES = "(" + ", ".join(f"'{s}'" for s in EXEC_STATES) + ")"
_ORDER_STATES = "(" + ", ".join(f"'{s}'" for s in ORDER_STATES) + ")"
# ExecutionRecord.stages_ns keys with their own column; other keys go to stages_extra.
STAGES = (
    "detected",
    "decided",
    "leg1_submit",
    "leg1_ack",
    "leg1_fill",
    "leg2_submit",
    "leg2_ack",
    "leg2_fill",
    "hedge_start",
    "hedge_end",
)
_STAGE_COLUMNS = "\n".join(f"        {s}_ns INTEGER," for s in STAGES)

_TABLES_V1 = (
    f"""
    CREATE TABLE opportunities (
        id                       INTEGER PRIMARY KEY,
        detected_ns              INTEGER NOT NULL,
        symbol                   TEXT    NOT NULL,
        combo                    TEXT    NOT NULL,
        kalshi_outcome           TEXT    NOT NULL CHECK (kalshi_outcome IN {_OUTCOMES}),
        kalshi_limit_price_e4    INTEGER NOT NULL,
        kalshi_size_e2           INTEGER NOT NULL,
        kalshi_cost_e6           INTEGER NOT NULL,
        kalshi_fee_e6            INTEGER NOT NULL,
        ibkr_outcome             TEXT    NOT NULL CHECK (ibkr_outcome IN {_OUTCOMES}),
        ibkr_limit_price_e4      INTEGER NOT NULL,
        ibkr_size_e2             INTEGER NOT NULL,
        ibkr_cost_e6             INTEGER NOT NULL,
        ibkr_fee_e6              INTEGER NOT NULL,
        size_e2                  INTEGER NOT NULL,
        gross_cost_e6            INTEGER NOT NULL,
        total_fees_e6            INTEGER NOT NULL,
        expected_profit_e6       INTEGER NOT NULL,
        net_edge_per_contract_e6 INTEGER NOT NULL,
        annualized_return_bps    INTEGER NOT NULL,
        kalshi_book_ns           INTEGER NOT NULL,
        ibkr_book_ns             INTEGER NOT NULL,
        mode                     TEXT    NOT NULL CHECK (mode IN {_MODES}),
        decision                 TEXT    NOT NULL
                                 CHECK (decision IN ('executed', 'skipped', 'logged')),
        reason                   TEXT    NOT NULL DEFAULT '',
        execution_id             TEXT
    ) STRICT
    """,
    "CREATE INDEX opportunities_detected ON opportunities (detected_ns)",
    "CREATE INDEX opportunities_symbol_detected ON opportunities (symbol, detected_ns)",
    """
    CREATE TABLE spreads (
        id                 INTEGER PRIMARY KEY,
        sampled_ns         INTEGER NOT NULL,
        symbol             TEXT    NOT NULL,
        kalshi_yes_ask_e4  INTEGER,
        kalshi_yes_size_e2 INTEGER,
        kalshi_no_ask_e4   INTEGER,
        kalshi_no_size_e2  INTEGER,
        ibkr_yes_ask_e4    INTEGER,
        ibkr_yes_size_e2   INTEGER,
        ibkr_no_ask_e4     INTEGER,
        ibkr_no_size_e2    INTEGER,
        cost_kalshi_yes_e4 INTEGER,
        cost_kalshi_no_e4  INTEGER
    ) STRICT
    """,
    "CREATE INDEX spreads_symbol_sampled ON spreads (symbol, sampled_ns)",
    f"""
    CREATE TABLE arb_executions (
        execution_id       TEXT    PRIMARY KEY,
        symbol             TEXT    NOT NULL,
        combo              TEXT    NOT NULL,
        mode               TEXT    NOT NULL CHECK (mode IN {_MODES}),
        state              TEXT    NOT NULL CHECK (state IN {_EXEC_STATES}),
        opportunity_id     INTEGER,
        created_ns         INTEGER NOT NULL,
        updated_ns         INTEGER NOT NULL,
        planned_qty_e2     INTEGER NOT NULL,
        expected_profit_e6 INTEGER NOT NULL,
        realized_pnl_e6    INTEGER NOT NULL DEFAULT 0,
        hedge_cost_e6      INTEGER NOT NULL DEFAULT 0,
{_STAGE_COLUMNS}
        stages_extra       TEXT    NOT NULL DEFAULT '{{}}',
        error              TEXT    NOT NULL DEFAULT ''
    ) STRICT
    """,
    "CREATE INDEX arb_executions_state ON arb_executions (state)",
    "CREATE INDEX arb_executions_created ON arb_executions (created_ns)",
    f"""
    CREATE TABLE executions (
        id               INTEGER PRIMARY KEY,
        execution_id     TEXT    NOT NULL REFERENCES arb_executions (execution_id),
        leg              TEXT    NOT NULL CHECK (leg IN ('leg1', 'leg2', 'hedge')),
        attempt          INTEGER NOT NULL DEFAULT 0,
        mode             TEXT    NOT NULL CHECK (mode IN {_MODES}),
        venue            TEXT    NOT NULL,
        symbol           TEXT    NOT NULL,
        outcome          TEXT    NOT NULL CHECK (outcome IN {_OUTCOMES}),
        limit_price_e4   INTEGER NOT NULL,
        requested_qty_e2 INTEGER NOT NULL,
        filled_qty_e2    INTEGER NOT NULL DEFAULT 0,
        filled_cost_e6   INTEGER NOT NULL DEFAULT 0,
        fees_e6          INTEGER NOT NULL DEFAULT 0,
        state            TEXT    NOT NULL CHECK (state IN {_ORDER_STATES}),
        client_order_id  TEXT    NOT NULL UNIQUE,
        venue_order_id   TEXT    NOT NULL DEFAULT '',
        decided_ns       INTEGER,
        submitted_ns     INTEGER,
        acked_ns         INTEGER,
        filled_ns        INTEGER,
        reason           TEXT    NOT NULL DEFAULT ''
    ) STRICT
    """,
    "CREATE INDEX executions_execution ON executions (execution_id)",
    f"""
    CREATE TABLE positions (
        symbol     TEXT    NOT NULL,
        venue      TEXT    NOT NULL,
        outcome    TEXT    NOT NULL CHECK (outcome IN {_OUTCOMES}),
        qty_e2     INTEGER NOT NULL,
        cost_e6    INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        PRIMARY KEY (symbol, venue, outcome)
    ) STRICT  -- a rowid table: DuckDB's sqlite scanner reads by rowid
    """,
)


def _derived(col: str) -> str | None:
    """The analysis column a view adds for a unit-suffixed base column (None: none)."""
    if col.endswith("_e6"):
        return f"{col} / 1e6 AS {col[:-3]}_usd"
    if col.endswith("_e4"):
        return f"{col} / 1e4 AS {col[:-3]}_usd"
    if col.endswith("_e2"):
        return f"{col} / 1e2 AS {col[:-3]}"  # contracts
    if col.endswith("_ns"):
        # full ns precision: 2026-01-02T03:04:05.123456789Z (NULL stays NULL)
        return (
            f"strftime('%Y-%m-%dT%H:%M:%S', {col} / 1000000000, 'unixepoch')"
            f" || printf('.%09dZ', {col} % 1000000000) AS {col[:-3]}_at"
        )
    return None


def _view(table: str, columns: list[str], extra: tuple[str, ...] = ()) -> str:
    derived = [d for d in map(_derived, columns) if d]
    body = ",\n        ".join(["t.*", *derived, *extra])
    return f"CREATE VIEW v_{table} AS\n    SELECT\n        {body}\n    FROM {table} AS t"


_VIEW_COLUMNS_V1: dict[str, list[str]] = {
    "opportunities": [
        "detected_ns",
        "kalshi_limit_price_e4",
        "kalshi_size_e2",
        "kalshi_cost_e6",
        "kalshi_fee_e6",
        "ibkr_limit_price_e4",
        "ibkr_size_e2",
        "ibkr_cost_e6",
        "ibkr_fee_e6",
        "size_e2",
        "gross_cost_e6",
        "total_fees_e6",
        "expected_profit_e6",
        "net_edge_per_contract_e6",
        "kalshi_book_ns",
        "ibkr_book_ns",
    ],
    "spreads": [
        "sampled_ns",
        "kalshi_yes_ask_e4",
        "kalshi_yes_size_e2",
        "kalshi_no_ask_e4",
        "kalshi_no_size_e2",
        "ibkr_yes_ask_e4",
        "ibkr_yes_size_e2",
        "ibkr_no_ask_e4",
        "ibkr_no_size_e2",
        "cost_kalshi_yes_e4",
        "cost_kalshi_no_e4",
    ],
    "arb_executions": [
        "created_ns",
        "updated_ns",
        "planned_qty_e2",
        "expected_profit_e6",
        "realized_pnl_e6",
        "hedge_cost_e6",
        *(f"{s}_ns" for s in STAGES),
    ],
    "executions": [
        "limit_price_e4",
        "requested_qty_e2",
        "filled_qty_e2",
        "filled_cost_e6",
        "fees_e6",
        "decided_ns",
        "submitted_ns",
        "acked_ns",
        "filled_ns",
    ],
    "positions": ["qty_e2", "cost_e6", "updated_ns"],
}

_VIEW_EXTRA_V1: dict[str, tuple[str, ...]] = {
    "arb_executions": (
        # latency stages in ms (NULL when a stage was not reached)
        "(decided_ns - detected_ns) / 1e6 AS detect_to_decide_ms",
        "(leg1_submit_ns - decided_ns) / 1e6 AS decide_to_submit_ms",
        "(leg1_ack_ns - leg1_submit_ns) / 1e6 AS leg1_ack_ms",
        "(leg1_fill_ns - leg1_submit_ns) / 1e6 AS leg1_fill_ms",
        "(leg2_submit_ns - leg1_fill_ns) / 1e6 AS leg1_fill_to_leg2_submit_ms",
        "(leg2_ack_ns - leg2_submit_ns) / 1e6 AS leg2_ack_ms",
        "(leg2_fill_ns - leg2_submit_ns) / 1e6 AS leg2_fill_ms",
        "(hedge_end_ns - hedge_start_ns) / 1e6 AS hedge_ms",
    ),
    "executions": (
        # average fill price: filled_cost_e6 / filled_qty_e2 is in $0.0001 units
        "CASE WHEN filled_qty_e2 > 0 THEN filled_cost_e6 * 1.0 / filled_qty_e2 / 1e4 END"
        " AS avg_price_usd",
        "(leg = 'hedge') AS hedge",  # a view column: DuckDB cannot see generated columns
    ),
}

_VIEWS_V1 = tuple(_view(t, cols, _VIEW_EXTRA_V1.get(t, ())) for t, cols in _VIEW_COLUMNS_V1.items())

# v2: the reconciliation audit trail. Append-only: every correction of the journal by
# venue truth (and every halt reconciliation called) is one row saying what changed,
# from what, to what, and why.
_AUDIT_V2 = (
    """
    CREATE TABLE audit (
        id              INTEGER PRIMARY KEY,
        ts_ns           INTEGER NOT NULL,
        execution_id    TEXT    NOT NULL DEFAULT '',
        client_order_id TEXT    NOT NULL DEFAULT '',
        field           TEXT    NOT NULL,
        old             TEXT    NOT NULL DEFAULT '',
        new             TEXT    NOT NULL DEFAULT '',
        reason          TEXT    NOT NULL,
        source          TEXT    NOT NULL
    ) STRICT
    """,
    "CREATE INDEX audit_ts ON audit (ts_ns)",
    "CREATE INDEX audit_execution ON audit (execution_id)",
    _view("audit", ["ts_ns"]),
)

# v3: the trading state (active / reducing / halted). Append-only: the newest row is the
# state; every change says when, from what, to what, why, and who (a limit, reconciliation,
# the user). A restart reads it back, so a halt survives until the user lifts it.
_TRADING_STATE_V3 = (
    """
    CREATE TABLE trading_state (
        id         INTEGER PRIMARY KEY,
        ts_ns      INTEGER NOT NULL,
        from_state TEXT    NOT NULL CHECK (from_state IN ('active', 'reducing', 'halted')),
        to_state   TEXT    NOT NULL CHECK (to_state IN ('active', 'reducing', 'halted')),
        reason     TEXT    NOT NULL,
        actor      TEXT    NOT NULL
    ) STRICT
    """,
    _view("trading_state", ["ts_ns"]),
)

# v4: what each market paid at resolution, one row per (mode, venue, symbol), and the
# settled PnL of every execution next to the PnL expected when it was decided. A leg is
# worth $1 per contract when its outcome (venue terms) is the venue's result, else 0; a
# pair netted at the venue before settlement is worth the same $1, so legs are valued
# as if held (the venue's own cash flow is in the settlements row).
_SETTLEMENTS_V4 = (
    f"""
    CREATE TABLE settlements (
        id          INTEGER PRIMARY KEY,
        ts_ns       INTEGER NOT NULL,
        settled_ns  INTEGER NOT NULL,
        mode        TEXT    NOT NULL CHECK (mode IN {_MODES}),
        venue       TEXT    NOT NULL,
        symbol      TEXT    NOT NULL,
        instrument  TEXT    NOT NULL,
        result      TEXT    NOT NULL CHECK (result IN {_OUTCOMES}),
        yes_qty_e2  INTEGER NOT NULL DEFAULT 0,
        no_qty_e2   INTEGER NOT NULL DEFAULT 0,
        payout_e6   INTEGER NOT NULL,
        cost_e6     INTEGER NOT NULL DEFAULT 0,
        fees_e6     INTEGER NOT NULL DEFAULT 0,
        source      TEXT    NOT NULL,
        detail      TEXT    NOT NULL DEFAULT '',
        UNIQUE (mode, venue, symbol)
    ) STRICT
    """,
    _view(
        "settlements",
        ["ts_ns", "settled_ns", "yes_qty_e2", "no_qty_e2", "payout_e6", "cost_e6", "fees_e6"],
    ),
    """
    CREATE VIEW v_settled_executions AS
    SELECT
        a.execution_id, a.symbol, a.mode, a.state, a.created_ns,
        a.expected_profit_e6,
        SUM(e.filled_cost_e6 + e.fees_e6) AS cost_e6,
        SUM(CASE WHEN e.outcome = s.result THEN e.filled_qty_e2 * 10000 ELSE 0 END) AS payout_e6,
        SUM(CASE WHEN e.outcome = s.result THEN e.filled_qty_e2 * 10000 ELSE 0 END)
            - SUM(e.filled_cost_e6 + e.fees_e6) AS settled_pnl_e6,
        MAX(s.settled_ns) AS settled_ns
    FROM arb_executions AS a
    JOIN executions AS e ON e.execution_id = a.execution_id AND e.filled_qty_e2 > 0
    JOIN settlements AS s ON s.mode = a.mode AND s.symbol = e.symbol AND s.venue = e.venue
    GROUP BY a.execution_id
    HAVING COUNT(*) = (
        SELECT COUNT(*) FROM executions AS x
        WHERE x.execution_id = a.execution_id AND x.filled_qty_e2 > 0
    )
    """,
)

# The views' unit columns as of the newest version (DuckDB mirrors these).
_VIEW_COLUMNS: dict[str, list[str]] = {
    **_VIEW_COLUMNS_V1,
    "executions": [*_VIEW_COLUMNS_V1["executions"], "fees_estimated_e6"],
}

# v5: fees as charged beside the model's estimate for the same fills, per order. Drift is
# ``fees_e6 − fees_estimated_e6``; positive means the venue charged more than the model.
_FEE_ESTIMATE_V5 = (
    "ALTER TABLE executions ADD COLUMN fees_estimated_e6 INTEGER NOT NULL DEFAULT 0",
    "DROP VIEW v_executions",
    _view("executions", _VIEW_COLUMNS["executions"], _VIEW_EXTRA_V1["executions"]),
    """
    CREATE VIEW v_fee_drift AS
    SELECT
        e.execution_id, e.client_order_id, e.mode, e.venue, e.symbol, e.leg,
        e.filled_qty_e2, e.fees_e6, e.fees_estimated_e6,
        e.fees_e6 - e.fees_estimated_e6 AS drift_e6,
        (e.fees_e6 - e.fees_estimated_e6) / 1e6 AS drift_usd,
        e.filled_ns
    FROM executions AS e
    WHERE e.filled_qty_e2 > 0 AND e.fees_e6 != e.fees_estimated_e6
    """,
)

# v6: runs. Every row carries the run that wrote it (``''`` for rows from before v6): a
# run is one monitor start/stop, one replay, one demo. ``mode = 'replay'`` marks replays.
RUN_TABLES = (
    "opportunities", "spreads", "arb_executions", "executions", "positions", "audit",
    "trading_state", "settlements",
)  # fmt: skip
_RUNS_V6 = (
    """
    CREATE TABLE runs (
        run_id        TEXT    PRIMARY KEY,
        started_ns    INTEGER NOT NULL,
        ended_ns      INTEGER,
        mode          TEXT    NOT NULL CHECK (mode IN ('monitor', 'paper', 'live', 'replay')),
        config_digest TEXT    NOT NULL,
        command       TEXT    NOT NULL DEFAULT ''
    ) STRICT
    """,
    *(f"ALTER TABLE {t} ADD COLUMN run_id TEXT NOT NULL DEFAULT ''" for t in RUN_TABLES),
    # which ForecastEx coupon rate (APY, bps) annualized_return_bps used
    "ALTER TABLE opportunities ADD COLUMN coupon_bps INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX arb_executions_run ON arb_executions (run_id)",
    "CREATE INDEX opportunities_run ON opportunities (run_id)",
    _view("runs", ["started_ns", "ended_ns"]),
    # settled PnL per symbol and per run, beside the PnL expected at execution
    """
    CREATE VIEW v_settled_symbols AS
    SELECT mode, symbol, COUNT(*) AS executions,
           SUM(expected_profit_e6) AS expected_profit_e6,
           SUM(settled_pnl_e6) AS settled_pnl_e6,
           SUM(settled_pnl_e6) / 1e6 AS settled_pnl_usd
    FROM v_settled_executions GROUP BY mode, symbol
    """,
    """
    CREATE VIEW v_settled_runs AS
    SELECT a.run_id, v.mode, COUNT(*) AS executions,
           SUM(v.expected_profit_e6) AS expected_profit_e6,
           SUM(v.settled_pnl_e6) AS settled_pnl_e6,
           SUM(v.settled_pnl_e6) / 1e6 AS settled_pnl_usd
    FROM v_settled_executions AS v JOIN arb_executions AS a USING (execution_id)
    GROUP BY a.run_id, v.mode
    """,
)

# v7: the ForecastEx incentive coupon, accrued once per UTC day (at its end) on every
# ForecastEx position held then; ``value_e6`` is what it accrued on (the lower of cost
# basis and mark), ``rate_bps`` the dated APY used. The venue pays it monthly into cash.
_COUPON_V7 = (
    f"""
    CREATE TABLE coupon_accruals (
        id          INTEGER PRIMARY KEY,
        day         TEXT    NOT NULL,  -- the UTC date accrued (YYYY-MM-DD)
        mode        TEXT    NOT NULL CHECK (mode IN {_MODES}),
        symbol      TEXT    NOT NULL,
        outcome     TEXT    NOT NULL CHECK (outcome IN {_OUTCOMES}),
        qty_e2      INTEGER NOT NULL,
        value_e6    INTEGER NOT NULL,
        rate_bps    INTEGER NOT NULL,
        accrued_e6  INTEGER NOT NULL,
        ts_ns       INTEGER NOT NULL,
        run_id      TEXT    NOT NULL DEFAULT '',
        UNIQUE (mode, day, symbol, outcome)
    ) STRICT
    """,
    _view("coupon_accruals", ["qty_e2", "value_e6", "accrued_e6", "ts_ns"]),
    """
    CREATE VIEW v_coupon_symbols AS
    SELECT mode, symbol, COUNT(DISTINCT day) AS days, MIN(day) AS first_day,
           MAX(day) AS last_day, SUM(accrued_e6) AS accrued_e6,
           SUM(accrued_e6) / 1e6 AS accrued_usd
    FROM coupon_accruals GROUP BY mode, symbol
    """,
)

# MIGRATIONS[i]: statements that take user_version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _TABLES_V1 + _VIEWS_V1,
    _AUDIT_V2,
    _TRADING_STATE_V3,
    _SETTLEMENTS_V4,
    _FEE_ESTIMATE_V5,
    _RUNS_V6,
    _COUPON_V7,
)
SCHEMA_VERSION = len(MIGRATIONS)
# The analysis tables (exported, summarised, mirrored as DuckDB views). The audit trail is
# a journal table of its own, not (yet) part of analysis exports.
TABLES = ("opportunities", "spreads", "arb_executions", "executions", "positions")
AUDIT_TABLE = "audit"


# ------------------------------------------------------------------ DuckDB --------

_DUCK_SCALE = {"_e6": ("0.000001", "_usd"), "_e4": ("0.0001", "_usd"), "_e2": ("0.01", "")}


def _duck_derived(col: str) -> str:
    suffix = col[-3:]
    if suffix in _DUCK_SCALE:
        factor, unit = _DUCK_SCALE[suffix]
        # DECIMAL(38,0) × DECIMAL(·,k) is an exact DECIMAL(38,k): no float anywhere
        return f"CAST({col} AS DECIMAL(38, 0)) * {factor} AS {col[:-3]}{unit}"
    return f"make_timestamp_ns({col}) AS {col[:-3]}_at"  # TIMESTAMP_NS (UTC)


# The time each analysis table is filtered on (``--since`` / ``--until``).
TIME_COLUMN = {
    "opportunities": "detected_ns",
    "spreads": "sampled_ns",
    "arb_executions": "created_ns",
    "executions": "decided_ns",
    "positions": "updated_ns",
}


def duckdb_views(
    alias: str = "db",
    *,
    run: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> tuple[str, ...]:
    """``CREATE VIEW`` statements for DuckDB over the arbkit file attached as ``alias``.

    DuckDB's sqlite scanner reads SQLite *views* with every column as VARCHAR, so
    analysis defines the same ``v_*`` views in DuckDB over the base tables (read with
    their real BIGINT types): dollars and contracts as exact DECIMALs, times as
    TIMESTAMP_NS, same column names as the SQLite views. ``run`` / ``since_ns`` /
    ``until_ns`` filter every view (so every query) to one run and a time window.
    """
    out = []
    for table, cols in _VIEW_COLUMNS.items():
        body = ",\n        ".join(
            ["t.*", *map(_duck_derived, cols), *_VIEW_EXTRA_V1.get(table, ())]
        )
        where = []
        if run is not None:
            where.append("t.run_id = '" + run.replace("'", "''") + "'")
        if since_ns is not None:
            where.append(f"t.{TIME_COLUMN[table]} >= {int(since_ns)}")
        if until_ns is not None:
            where.append(f"t.{TIME_COLUMN[table]} < {int(until_ns)}")
        cond = f"\n    WHERE {' AND '.join(where)}" if where else ""
        out.append(
            f"CREATE OR REPLACE VIEW v_{table} AS\n    SELECT\n        {body}\n"
            f"    FROM {alias}.{table} AS t{cond}"
        )
    return tuple(out)
