"""A two-venue rig on loopback: the local Kalshi exchange and TWS, the REAL gateways and
order clients, a real DetectionPipeline fed by the gateways' ticks, and the Executor
journaling into a SQLite ``Database``. Books are moved only through ``set_bids`` (the
driver interface), so what the venues hold and what the pipeline sees agree.

Used by the integration tests, the reliability suite and the crash-test driver script
(which imports this module from a subprocess).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbkit.arbitrage.pipeline import DetectionPipeline
from arbkit.config.execution_loader import ExecutionConfig, ExecutionParams, RiskLimits
from arbkit.config.loader import SymbolMap, parse_symbol_map
from arbkit.execution.executor import Executor
from arbkit.execution.journal import Journal
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.gateways.ibkr_orders import IbkrOrderClient
from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import Mode, Money, NormalizedTick, Opportunity, Outcome, Price, Qty, Venue
from arbkit.sim.kalshi_exchange import KalshiExchange
from arbkit.sim.tws_server import TwsServer
from arbkit.storage.database import Database

SYMBOL = "FED"
TICKER = "KXFED-27JUN-T4"
FX_MARKET = "FF-JUN"
FX_YES, FX_NO = 731000001, 731000002


def verified(kalshi_yes_is: str = "yes") -> dict[str, str]:
    """A complete equivalence block (live trades only verified pairs)."""
    return {
        "relation": "identical" if kalshi_yes_is == "yes" else "complement",
        "resolution_source": "FOMC statement",
        "cutoff_time": "2027-06-29T14:00-04:00",
        "verified_by": "tests",
        "verified_on": "2026-12-03",
    }


def symbol_map(**extra: Any) -> SymbolMap:
    """The one test symbol; ``extra`` overrides its keys (``kalshi_yes_is``, ``leg_order``)."""
    return parse_symbol_map(
        {
            "symbols": {
                SYMBOL: {
                    "kalshi_ticker": TICKER,
                    "kalshi_yes_is": "yes",
                    "resolution": "2027-06-30",
                    "forecastex": {"yes_con_id": FX_YES, "no_con_id": FX_NO},
                    "equivalence": verified(extra.get("kalshi_yes_is", "yes")),
                    **extra,
                }
            }
        }
    )


def px(dollars: str) -> Price:
    return Price(round(float(dollars) * 10_000))


def n(contracts: int) -> Qty:
    return Qty(contracts * 100)


def default_config(**execution: Any) -> ExecutionConfig:
    return ExecutionConfig(
        mode=Mode.LIVE,
        risk=RiskLimits(
            symbol_cooldown_ms=0, cooldown_ms_after_failure=0, max_consecutive_failures=1_000
        ),
        execution=ExecutionParams(**{"leg2_timeout_ms": 400, **execution}),
    )


@dataclass
class Venues:
    """Both local venues started on 127.0.0.1:0 with one arb-able market."""

    key_id: str
    key_path: Path
    public_pem: str
    exchange: KalshiExchange = field(init=False)
    tws: TwsServer = field(init=False)

    async def start(self) -> Venues:
        self.exchange = KalshiExchange(max_clock_skew_ms=5_000, heartbeat_s=1.0)
        self.exchange.register_key(self.key_id, self.public_pem)
        self.exchange.fund(self.key_id, Money(100_000 * 1_000_000))
        self.exchange.add_market(TICKER)
        await self.exchange.start()
        self.tws = TwsServer()  # no commission, as modelled (the $0.01 is in the pair price)
        self.tws.add_market(
            FX_MARKET,
            symbol="FF",
            last_trade_date="20270629",
            strike="4",
            yes_con_id=FX_YES,
            no_con_id=FX_NO,
        )
        await self.tws.start()
        self.arb_books()
        return self

    async def stop(self) -> None:
        await self.tws.stop()
        await self.exchange.stop()

    def arb_books(self, k_size: int = 10, f_size: int = 10, hedge_size: int = 50) -> None:
        """Kalshi YES ask 0.40 (NO bid 0.60), ForecastEx NO ask 0.51 (YES bid 0.50; a
        ForecastEx pair executes at $1.01): the Kalshi-YES + ForecastEx-NO pair costs 0.91.
        The other pair costs 1.21. The hedge (Kalshi NO) is asked at 0.65 (YES bid 0.35)."""
        self.kalshi_book(yes=[("0.35", hedge_size)], no=[("0.60", k_size)])
        self.fx_book(yes=[("0.50", f_size)], no=[("0.45", 10)])

    def kalshi_book(self, yes: list[tuple[str, int]], no: list[tuple[str, int]]) -> None:
        self.exchange.set_bids(TICKER, Outcome.YES, [(px(p), n(q)) for p, q in yes])
        self.exchange.set_bids(TICKER, Outcome.NO, [(px(p), n(q)) for p, q in no])

    def fx_book(self, yes: list[tuple[str, int]], no: list[tuple[str, int]]) -> None:
        self.tws.set_bids(FX_MARKET, Outcome.YES, [(px(p), n(q)) for p, q in yes])
        self.tws.set_bids(FX_MARKET, Outcome.NO, [(px(p), n(q)) for p, q in no])

    def kalshi_positions(self) -> dict[tuple[str, Outcome], int]:
        acct = self.exchange.engine.account(self.key_id)
        out: dict[tuple[str, Outcome], int] = {}
        for t, p in acct.positions.items():
            if p.net > 0:
                out[(t, Outcome.YES)] = p.net
            elif p.net < 0:
                out[(t, Outcome.NO)] = -p.net
        return out

    def fx_positions(self) -> dict[int, int]:
        return {c: q for c, (q, _) in self.tws.positions.items() if q}


def new_key(directory: Path) -> tuple[str, Path, str]:
    path = directory / "kalshi-test-key.pem"
    _, public_pem = generate_key_pair(path)
    return str(uuid.uuid4()), path, public_pem


class Rig:
    """The monitor's pipeline + the executor with the real clients, minus the UI."""

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        auth: KalshiAuth,
        tws_port: int,
        db_path: Path,
        *,
        config: ExecutionConfig | None = None,
        client_id: int = 11,
        journal_wrap: Callable[[Database], Journal] | None = None,
        kalshi_wrap: Callable[[KalshiOrderClient], Any] | None = None,
        ibkr_wrap: Callable[[IbkrOrderClient], Any] | None = None,
        rest_kwargs: dict[str, Any] | None = None,
        ws_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.sm = symbol_map()
        self.config = config or default_config()
        self.pipeline = DetectionPipeline(
            self.sm, self.config.fees, self.config.detector, redecide_ms=3_600_000
        )
        self.opportunities: asyncio.Queue[Opportunity] = asyncio.Queue()
        self.ws = KalshiWebSocket(
            ws_url, auth, {TICKER: SYMBOL}, self._on_kalshi, **(ws_kwargs or {})
        )
        self.gw = IbkrGateway(
            "127.0.0.1",
            tws_port,
            client_id,
            self.sm,
            self._on_ibkr,
            cache_path=None,
            heartbeat_interval_ms=0,
            reconnect_initial_ms=50,
        )
        self.rest = KalshiRestClient(
            rest_url,
            auth,
            **(
                rest_kwargs
                or {
                    "read_tokens_per_s": 1_000,
                    "write_tokens_per_s": 1_000,
                    "backoff_base_s": 0.01,
                    "backoff_max_s": 0.05,
                }
            ),
        )
        # fills and order updates from the authenticated WS channels (the source of truth)
        self.kalshi_client = KalshiOrderClient(self.rest, {SYMBOL: TICKER}, ws_url=ws_url)
        self.ibkr_client = IbkrOrderClient(self.gw, commission_wait_ms=100)
        self.db = Database(db_path)
        self.journal_wrap = journal_wrap
        self.kalshi_wrap = kalshi_wrap
        self.ibkr_wrap = ibkr_wrap
        self.executor: Executor | None = None
        self.bad_decisions: list[str] = []  # opportunities decided on an invalid ladder
        self.decisions = 0

    def _on_kalshi(self, ticks: list[NormalizedTick]) -> None:
        self._on(Venue.KALSHI, ticks)

    def _on_ibkr(self, ticks: list[NormalizedTick]) -> None:
        self._on(Venue.IBKR, ticks)

    def _on(self, venue: Venue, ticks: list[NormalizedTick]) -> None:
        now = time.time_ns()
        self.pipeline.mark_alive(venue, now)
        res = self.pipeline.on_ticks(ticks, now)
        for opp in res.decide:
            b = self.pipeline.book[opp.symbol]
            for v, o in ((Venue.KALSHI, opp.kalshi.outcome), (Venue.IBKR, opp.ibkr.outcome)):
                if not b.ladder(v, o).valid:
                    self.bad_decisions.append(f"{opp.symbol} {v.value} {o.value} invalid")
            if not self.ws.normalizer.is_valid(TICKER):  # the feed's own view, not the book's
                self.bad_decisions.append(f"{opp.symbol}: Kalshi normalizer book invalid")
            if not self.gw.connected:
                self.bad_decisions.append(f"{opp.symbol}: IBKR disconnected")
            self.decisions += 1
            self.opportunities.put_nowait(opp)

    def quote(self, symbol: str, venue: Venue, outcome: Outcome) -> list[tuple[Price, Qty]]:
        lad = self.pipeline.book[symbol].ladder(venue, outcome)
        return list(lad.levels()) if lad.valid else []

    def books_valid(self) -> bool:
        b = self.pipeline.book[SYMBOL]
        return all(b.ladder(v, o).valid for v in Venue for o in Outcome)

    async def start(self) -> Rig:
        await self.db.open()
        journal: Journal = self.db if self.journal_wrap is None else self.journal_wrap(self.db)
        await self.ws.start()
        await self.gw.start()
        await self.kalshi_client.start_stream()
        kalshi: Any = (
            self.kalshi_client if self.kalshi_wrap is None else self.kalshi_wrap(self.kalshi_client)
        )
        ibkr: Any = self.ibkr_client if self.ibkr_wrap is None else self.ibkr_wrap(self.ibkr_client)
        self.executor = Executor(
            self.config,
            self.sm,
            kalshi,
            ibkr,
            journal,
            quote=self.quote,
            clock=time.time_ns,
        )
        await self.executor.refresh_balances()  # live refuses on an unknown balance
        return self

    async def stop(self) -> None:
        await self.kalshi_client.stop_stream()
        await self.ws.stop()
        await self.gw.stop()
        await self.rest.aclose()
        await self.db.close()

    async def next_opportunity(self, timeout_s: float = 10.0) -> Opportunity:
        return await asyncio.wait_for(self.opportunities.get(), timeout_s)

    def drain(self) -> None:
        while not self.opportunities.empty():
            self.opportunities.get_nowait()

    async def until(self, pred: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or pred}")
            await asyncio.sleep(0.005)
