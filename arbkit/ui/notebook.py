"""One-call starts for notebook cells (top-level ``await``), so notebooks stay thin.

``start_local_demo`` is the default: local Kalshi exchange + local TWS + market model on
loopback, no accounts. ``start_real`` is the clearly marked alternative: config files plus
credentials from the environment; it never prints key material or the key id.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbkit.config.execution_loader import ExecutionConfig, apply_overrides, load_execution_config
from arbkit.config.loader import load_symbol_map
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Mode
from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, IbkrEndpoint, KalshiEndpoint
from arbkit.sim.local import LocalVenues

KALSHI_ENVIRONMENTS = {
    "prod": (
        "https://external-api.kalshi.com/trade-api/v2",
        "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
    ),
    "demo": (
        "https://external-api.demo.kalshi.co/trade-api/v2",
        "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
    ),
}


class CredentialsMissing(RuntimeError):
    """Real venues need credentials in the environment (never in the notebook)."""


class AlreadyRunning(RuntimeError):
    """This kernel already runs a monitor of another kind (local venues vs real ones)."""


# The session this kernel runs (one kernel = one process): Run All twice reuses it
# instead of starting a second monitor on the same account, database and ports.
_running: dict[str, Session] = {}


def running_session() -> Session | None:
    """The monitor session this kernel is running, if any."""
    s = _running.get("session")
    if s is not None and not s.monitor._started:
        _running.pop("session", None)
        return None
    return s


def _reuse(kind: str) -> Session | None:
    s = running_session()
    if s is None:
        return None
    if s.kind != kind:
        raise AlreadyRunning(
            f"this kernel already runs a monitor against {s.kind} venues; run "
            "`await session.stop()` (or restart the kernel) before starting one against "
            f"{kind} venues"
        )
    print(
        f"a monitor is already running in this kernel ({s.kind} venues, "
        f"{len(s.monitor.symbol_map.symbols)} symbols, mode {s.monitor.mode.value}): "
        "reusing it. Run `await session.stop()` first to start one with new parameters."
    )
    return s


@dataclass(slots=True)
class Session:
    """A running monitor (and the local venues, when simulated). Unpacks as
    ``venues, monitor = session``."""

    venues: LocalVenues | None
    monitor: ArbitrageMonitor
    dashboards: list[Any] = field(default_factory=list)
    kind: str = "local"  # "local" (simulated venues) or "real"

    def __iter__(self) -> Iterator[Any]:
        return iter((self.venues, self.monitor))

    async def stop(self) -> None:
        if _running.get("session") is self:
            _running.pop("session", None)
        for d in self.dashboards:
            await d.aclose()
        self.dashboards.clear()
        try:
            await self.monitor.stop()
        finally:
            if self.venues is not None:
                await self.venues.stop()

    def dashboard(self, **kw: Any) -> Any:
        """A live Dashboard over this session's monitor (stopped with the session). A
        new one replaces the previous one (a re-run cell), so only one refreshes."""
        from arbkit.ui.dashboard import Dashboard

        for old in self.dashboards:
            old.stop()
        self.dashboards.clear()
        d = Dashboard(self.monitor, **kw)
        self.dashboards.append(d)
        return d


async def start_local_demo(
    n_symbols: int = 6,
    seed: int = 7,
    *,
    db_path: str | Path | None = None,
    record_path: str | Path | None = None,
    mode: str = "paper",
    execution_file: str | Path | None = None,
    overrides: dict[str, str] | None = None,
    updates_per_s: float = 300.0,
    dislocation_rate_per_min: float = 4.0,
    data_dir: str | Path | None = None,
    register: bool = True,
) -> Session:
    """Local venues + market model + monitor, connected through the real gateways; the
    kernel's running local session instead, if it has one (``register=False``: a
    private session that neither reuses nor becomes the kernel's)."""
    if register:
        reused = _reuse("local")
        if reused is not None:
            return reused
    cfg = load_execution_config(execution_file) if execution_file else ExecutionConfig()
    cfg = apply_overrides(cfg, {"mode": mode, **(overrides or {})}, "start_local_demo")
    if cfg.mode is Mode.LIVE:
        raise ValueError("the local demo trades against simulated venues: use paper or monitor")
    venues = LocalVenues(
        n_symbols,
        seed=seed,
        updates_per_s=updates_per_s,
        dislocation_rate_per_min=dislocation_rate_per_min,
        data_dir=data_dir,
    )
    info = await venues.start()
    assert venues.auth is not None
    monitor = ArbitrageMonitor(
        venues.symbol_map,
        cfg,
        kalshi=KalshiEndpoint(info.kalshi_rest_url, info.kalshi_ws_url, venues.auth),
        ibkr=IbkrEndpoint(port=info.tws_port, cache_path=venues.data_dir / "contracts.json"),
        db_path=db_path,
        record_path=record_path,
    )
    try:
        await monitor.start()
    except BaseException:
        await monitor.stop()
        await venues.stop()
        raise
    session = Session(venues, monitor)
    if register:
        _running["session"] = session
    return session


async def start_real(
    symbols_file: str | Path,
    execution_file: str | Path,
    *,
    confirm_live: bool = False,
    kalshi_env: str = "demo",
    ibkr_host: str = "127.0.0.1",
    ibkr_port: int = 7497,
    ibkr_client_id: int = 1,
    ibkr_account: str | None = None,
    db_path: str | Path | None = "data/arbkit.sqlite",
    record_path: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> Session:
    """Kalshi (``kalshi_env`` demo/prod) + TWS/IB Gateway from config files. Credentials:
    KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH (or KALSHI_PRIVATE_KEY) in the
    environment. Live orders need ``mode = "live"`` in the file AND ``confirm_live``.
    The kernel's running real session instead, if it has one."""
    reused = _reuse("real")
    if reused is not None:
        return reused
    rest, ws = KALSHI_ENVIRONMENTS[kalshi_env]
    try:
        auth = KalshiAuth.from_env(dict(os.environ) if env is None else env)
    except Exception as exc:
        # the message names variables, never their values
        raise CredentialsMissing(
            f"Kalshi credentials: {type(exc).__name__}. Set KALSHI_API_KEY_ID and "
            "KALSHI_PRIVATE_KEY_PATH (or KALSHI_PRIVATE_KEY) before starting JupyterLab."
        ) from None
    monitor = ArbitrageMonitor(
        load_symbol_map(symbols_file),
        load_execution_config(execution_file),
        kalshi=KalshiEndpoint(rest, ws, auth),
        ibkr=IbkrEndpoint(ibkr_host, ibkr_port, ibkr_client_id, ibkr_account),
        db_path=db_path,
        record_path=record_path,
        confirm_live=confirm_live,
    )
    await monitor.start()
    session = _running["session"] = Session(None, monitor, kind="real")
    return session


async def record_demo_capture(
    capture_path: str | Path,
    *,
    seconds: float = 20.0,
    n_symbols: int = 6,
    seed: int = 7,
    updates_per_s: float = 300.0,
    dislocation_rate_per_min: float = 4.0,
) -> Path:
    """Run the local demo in monitor mode for ``seconds`` recording every raw venue
    message; returns the symbol map written next to the capture (for replay)."""
    capture = Path(capture_path)
    capture.parent.mkdir(parents=True, exist_ok=True)
    symbols_out = symbols_path_for(capture)
    session = await start_local_demo(
        n_symbols,
        seed,
        record_path=capture,
        mode="monitor",
        updates_per_s=updates_per_s,
        dislocation_rate_per_min=dislocation_rate_per_min,
        register=False,
    )
    try:
        await asyncio.sleep(seconds)  # the monitor wrote the map next to the capture
    finally:
        await session.stop()
    return symbols_out


def symbols_path_for(capture_path: str | Path) -> Path:
    """The symbol map recorded with a capture (the sidecar every recording writes)."""
    from arbkit.storage.capture import symbol_map_path

    return symbol_map_path(capture_path)


async def load_catalogue(source: str, path: str | Path, *, n_symbols: int = 6) -> tuple[Any, str]:
    """The listings notebook 04 matches: ``"local"`` starts the local venues (their
    universe plus the decoy listings), pulls both into the catalogue at ``path`` and stops
    them; ``"catalogue"`` reads what ``arbkit match`` wrote there."""
    from arbkit.gateways.discovery import Catalogue, pull

    if source == "catalogue":
        cat = Catalogue.load(path)
        return cat, f"{path}: {len(cat.kalshi)} Kalshi markets, {len(cat.forecastex)} pairs"
    if source != "local":
        raise ValueError(f"SOURCE = {source!r}: use 'local' or 'catalogue'")
    venues = LocalVenues(n_symbols, seed=7, updates_per_s=20.0)
    info = await venues.start()
    try:
        assert venues.auth is not None and venues.tws is not None
        # one search per first letter of the local products (a real TWS: see arbkit match)
        letters = sorted({s[0] for s in venues.tws.underlier_symbols})
        return await pull(
            path,
            info.kalshi_rest_url,
            venues.auth,
            ibkr_port=info.tws_port,
            max_age_s=0,
            patterns=letters,
        )
    finally:
        await venues.stop()
