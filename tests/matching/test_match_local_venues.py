"""Issue 15 end to end: ``arbkit match`` against the local venues (real sockets, real
signatures, ib_async) → review → ``--apply`` → a symbol map that ``arbkit monitor`` runs
on. The local venues list the demo universe plus the labelled set's decoys."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tomllib
from pathlib import Path

from arbkit.config.execution_loader import EXAMPLE_EXECUTION
from arbkit.config.loader import load_symbol_map
from arbkit.sim.local import LocalVenues


async def arbkit(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arbkit.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_match_writes_a_symbol_map_the_monitor_runs_on(tmp_path: Path) -> None:
    venues = LocalVenues(6, seed=7, updates_per_s=50.0, data_dir=tmp_path / "sim")
    info = await venues.start()
    try:
        env = {
            **os.environ,
            "KALSHI_API_KEY_ID": info.kalshi_key_id,
            "KALSHI_PRIVATE_KEY_PATH": str(info.kalshi_key_file),
        }
        kalshi = ["--kalshi-env", "custom", "--kalshi-rest", info.kalshi_rest_url]
        review, out_map = tmp_path / "review.toml", tmp_path / "matched.toml"
        searches = [a for s in sorted({s[0] for s in venues.tws.underlier_symbols})
                    for a in ("--search", s)]  # fmt: skip
        rc, out, err = await arbkit(
            "match", *kalshi, "--ibkr-port", str(info.tws_port), *searches,
            "--catalogue", str(tmp_path / "catalogue.json"), "--review", str(review), env=env,
        )  # fmt: skip
        assert rc == 0, err
        assert "26 proposals (12 complement, 14 identical)" in out, out
        assert "16 contract-detail requests, 0 underliers from cache" in out, out
        # a second run refreshes incrementally: the 16 underliers come from the catalogue
        rc, again, err = await arbkit(
            "match", *kalshi, "--ibkr-port", str(info.tws_port), *searches,
            "--catalogue", str(tmp_path / "catalogue.json"), "--review", str(review), env=env,
        )  # fmt: skip
        assert rc == 0, err
        assert "0 contract-detail requests, 16 underliers from cache" in again, again
        assert "26 proposals (12 complement, 14 identical)" in again, again
        pairs = tomllib.loads(review.read_text())["pair"]
        # the demo universe's six pairs are among them, with the universe's orientation
        universe = {m.kalshi_ticker: m for m in venues.universe.markets}
        found = {p["kalshi_ticker"]: p for p in pairs if p["kalshi_ticker"] in universe}
        assert len(found) == 6
        for t, p in found.items():
            assert p["yes_con_id"] == universe[t].yes_con_id
            assert p["kalshi_yes_is"] == universe[t].kalshi_yes_is.value
        # confirm the universe's pairs, reject the rest
        text = review.read_text().split("[[pair]]")
        text = [text[0]] + [
            chunk.replace('decision = ""', 'decision = "confirm"' if any(
                f'kalshi_ticker = "{t}"' in chunk for t in universe) else 'decision = "reject"')
            for chunk in text[1:]
        ]  # fmt: skip
        review.write_text("[[pair]]".join(text))
        rc, out, err = await arbkit(
            "match", "--apply", str(review), "--out", str(out_map), "--verified-by", "test",
            env=env,
        )  # fmt: skip
        assert rc == 0, err
        smap = load_symbol_map(out_map)
        assert sorted(s.kalshi_ticker for s in smap.symbols.values()) == sorted(universe)
        assert all(not s.equivalence.missing_for_live() for s in smap.symbols.values())
        db = tmp_path / "mon.sqlite"
        rc, out, err = await arbkit(
            "monitor", "--symbols", str(out_map), "--execution", str(EXAMPLE_EXECUTION),
            *kalshi, "--kalshi-ws", info.kalshi_ws_url, "--ibkr-port", str(info.tws_port),
            "--db", str(db), "--seconds", "4", env=env,
        )  # fmt: skip
        assert rc == 0, err
        con = sqlite3.connect(db)
        seen = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM spreads")}
        con.close()
        assert seen and seen <= set(smap.symbols), seen
    finally:
        await venues.stop()
