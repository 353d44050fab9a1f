"""``arbkit match`` offline: catalogue → review file → confirmed symbol map that loads,
with the equivalence block filled and only identical/complement pairs live-eligible."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from arbkit.config.loader import load_symbol_map
from arbkit.gateways.discovery import Catalogue
from arbkit.model import Outcome
from arbkit.sim.listings import labelled_pairs, venue_listings


def arbkit(*args: str) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "arbkit.cli", *args], capture_output=True, text=True, timeout=60
    )
    return p.returncode, p.stdout, p.stderr


def catalogue(tmp_path: Path) -> Path:
    kalshi, fx = venue_listings()
    cat = Catalogue(tmp_path / "catalogue.json")
    cat.kalshi = {k.ticker: k for k in kalshi}
    cat.forecastex = {f.yes_con_id: f for f in fx}
    return cat.save()


def test_offline_review_then_apply_writes_a_verified_symbol_map(tmp_path: Path) -> None:
    cat = catalogue(tmp_path)
    review = tmp_path / "review.toml"
    rc, out, err = arbkit("match", "--offline", "--catalogue", str(cat), "--review", str(review))
    assert rc == 0, err
    assert out.startswith("20 proposals (10 complement, 10 identical)")
    data = tomllib.loads(review.read_text())
    assert len(data["pair"]) == 20 and all(p["decision"] == "" for p in data["pair"])
    # the trader confirms all but one, and rejects that one
    text = review.read_text().replace('decision = ""', 'decision = "confirm"', 19)
    text = text.replace('decision = ""', 'decision = "reject"')
    review.write_text(text)
    out_map = tmp_path / "symbols.toml"
    rc, out, err = arbkit(
        "match", "--apply", str(review), "--out", str(out_map), "--verified-by", "trader"
    )
    assert rc == 0, err
    assert out.strip().endswith("19 pairs confirmed by trader")
    smap = load_symbol_map(out_map)
    assert len(smap) == 19
    truth = {p.kalshi.ticker: p for p in labelled_pairs() if p.tradable}
    for spec in smap.symbols.values():
        t = truth[spec.kalshi_ticker]
        assert spec.forecastex.yes_con_id == t.forecastex.yes_con_id
        assert spec.kalshi_yes_is is (Outcome.YES if t.relation == "identical" else Outcome.NO)
        assert spec.equivalence.relation == t.relation
        assert spec.equivalence.missing_for_live() == []  # verified: live may trade it


def test_match_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    rc, _, err = arbkit("match", "--offline", "--catalogue", str(tmp_path / "none.json"))
    assert rc == 2 and err.startswith("arbkit match: error:") and err.count("\n") == 1
    review = tmp_path / "r.toml"
    review.write_text('[[pair]]\ndecision = "maybe"\nkalshi_ticker = "X"\n')
    rc, _, err = arbkit("match", "--apply", str(review), "--out", str(tmp_path / "s.toml"))
    assert rc == 2 and "decision 'maybe'" in err
    review.write_text('[[pair]]\ndecision = "confirm"\nkalshi_ticker = "X"\n')
    rc, _, err = arbkit("match", "--apply", str(review), "--out", str(tmp_path / "s.toml"))
    assert rc == 2 and "--verified-by" in err
