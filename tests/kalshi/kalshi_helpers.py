"""Shared helpers for the Kalshi tests (imported as a plain module: tests/ has no package)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Price, Qty, parse_price, parse_qty
from arbkit.sim.kalshi_exchange import KalshiExchange

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"
TICKERS = ("KXFED-26DEC-T300", "KXFED-26DEC-T325", "KXCPI-26NOV-T03")


@dataclass
class Venue:
    exchange: KalshiExchange
    auth: KalshiAuth
    key_path: Path

    def ladder(self, ticker: str, outcome: Outcome, *levels: tuple[str, str]) -> None:
        self.exchange.set_bids(
            ticker, outcome, [(Price(parse_price(p)), Qty(parse_qty(q))) for p, q in levels]
        )


async def eventually(pred: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)
