"""Real browser: notebooks 02 (spread analysis) and 03 (parameter tuning) in JupyterLab,
Run All in headless Chromium. 02 starts with no database (it records a short demo one);
03 records a short capture. Checked on the rendered page: 02's figures draw data (the
time axis in seconds for a seconds-long history, duration bars stacked), its summary and
per-symbol PnL tables show exact dollars; 03's heatmaps carry a dollar value in every
cell and the tuned config's changed lines are printed. Screenshots go to
``test-output/jupyterlab_spread_analysis*.png`` and ``jupyterlab_tuning*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from tests.browser.test_jupyterlab import (
    CHROMIUM_ARGS,
    _chromium,
    _open_and_run_all,
    jupyterlab,
)
from tests.notebooks.nbrun import NOTEBOOKS, with_parameters

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-output"

USER_EXECUTION = """\
mode = "paper"

[detector]
min_edge_usd = "0.02"  # mine
max_contracts_per_trade = 10

[risk]
max_total_exposure_usd = "1234.5"  # my exposure cap
symbol_cooldown_ms = 5000
"""


@pytest.fixture
def analysis_lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab serving 02 (no database given) and 03 (short capture) on loopback."""
    tmp = tmp_path
    root = tmp / "root"
    root.mkdir()
    nb2 = nbformat.read(NOTEBOOKS / "02_spread_analysis.ipynb", as_version=4)
    params2 = {
        "DB_PATH": None, "DEMO_DB": str(tmp / "demo.sqlite"), "DEMO_SECONDS": 5,
        "N_SYMBOLS": 3, "SEED": 7, "RUN": None, "SINCE": None, "UNTIL": None,
    }  # fmt: skip
    nbformat.write(with_parameters(nb2, params2), root / "02_spread_analysis.ipynb")
    user = tmp / "my_execution.toml"
    user.write_text(USER_EXECUTION)
    nb3 = nbformat.read(NOTEBOOKS / "03_parameter_tuning.ipynb", as_version=4)
    params3 = {
        "CAPTURE_PATH": str(tmp / "capture.jsonl"), "SYMBOLS_PATH": None,
        "EXECUTION_PATH": str(user), "RECORD_SECONDS": 5, "DISLOCATIONS_PER_MIN": 40.0,
        "N_SYMBOLS": 3, "SEED": 7, "MIN_EDGE_USD": "0:0.03:0.01", "MAX_CONTRACTS": ["5", "50"],
        "KALSHI_TAKER_COEFFICIENTS": ["0.05", "0.07"], "COOLDOWN_MS": ["0", "5000"],
        "EXPOSURE_CHARGE_BPS": 100, "JOBS": 1, "OUT_CONFIG": str(tmp / "tuned.toml"),
        "CATALOGUE_DIR": None, "SEARCH_RANGES": ["detector.min_edge_usd=0.005:0.03:0.005"],
        "SEARCH_SAMPLER": "grid", "SEARCH_TRIALS": 3, "SEARCH_JOURNAL": str(tmp / "s.log"),
        "SEARCH_STUDY": "t", "DASK_WORKERS": 2, "DASK_SCHEDULER": None,
        "OUT_SEARCH_CONFIG": str(tmp / "searched.toml"),
    }  # fmt: skip
    nbformat.write(with_parameters(nb3, params3), root / "03_parameter_tuning.ipynb")
    with jupyterlab(root, tmp) as served:
        yield served


def _plots(page: Any, n: int, timeout_ms: int) -> None:
    """Wait until ``n`` plotly figures have rendered (each has a main SVG)."""
    page.wait_for_function(
        f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}",
        timeout=timeout_ms,
    )


def _output(page: Any, text: str) -> Any:
    """A cell output (not the cell's source) containing ``text``."""
    return page.locator(".jp-OutputArea-output", has_text=text).first


def _figure(page: Any, title: str) -> Any:
    return page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text=title)).first


def _bars(fig: Any) -> list[tuple[float, float, float]]:
    """(panel baseline, x from, x to) of every bar as drawn: the x extent from the SVG
    path itself (a bounding box adds the white outline), the panel from the baseline."""
    out = []
    for bar in fig.locator(".barlayer .point path").all():
        d = bar.get_attribute("d") or ""
        m = re.match(r"M([\d.]+),[\d.]+V[\d.]+H([\d.]+)V", d)
        box = bar.bounding_box()
        if m and box:
            out.append((round(box["y"] + box["height"]), float(m[1]), float(m[2])))
    return out


def _errors(page: Any) -> list[str]:
    return [e.inner_text() for e in page.locator(".jp-RenderedText[data-mime-type*=error]").all()]


def _spread_analysis(page: Any, base: str, token: str) -> None:
    from playwright.sync_api import expect

    try:
        _open_and_run_all(page, base, token, "02_spread_analysis.ipynb")
        expect(_output(page, "no DB_PATH given: recording 5 s")).to_be_visible(timeout=60_000)
        _plots(page, 9, 120_000)
        assert not _errors(page)
        # the summary DataFrame and the per-symbol PnL table, dollars at six decimals
        summary = page.locator(".jp-RenderedHTMLCommon table", has_text="realized PnL").first
        summary.scroll_into_view_if_needed()
        expect(summary).to_contain_text("open positions")
        text = summary.text_content() or ""
        assert re.search(r"realized PnL\s*\$\d+\.\d{6}", text), text
        pnl = page.locator(".jp-RenderedHTMLCommon table", has_text="expected at execution")
        expect(pnl.first).to_contain_text("paper")
        summary.scroll_into_view_if_needed()
        page.screenshot(path=str(OUT / "jupyterlab_spread_analysis.png"))

        # opportunities over time: bars drawn, a seconds axis for a seconds-long history
        over = _figure(page, "Opportunities over time")
        over.scroll_into_view_if_needed()
        expect(over.get_by_text("time (UTC), 1 s buckets")).to_be_visible()
        assert over.locator(".barlayer .point path").count() >= 1
        ticks = over.locator(".xaxislayer-above text").all_text_contents()
        assert any(t.count(":") == 2 for t in ticks), ticks  # HH:MM:SS
        page.wait_for_timeout(300)
        over.screenshot(path=str(OUT / "jupyterlab_spread_analysis_over_time.png"))

        # cost to arb: one panel per Kalshi side, the symbols' bars side by side
        cost = _figure(page, "Cost to buy both sides")
        cost.scroll_into_view_if_needed()
        expect(cost.get_by_text("Kalshi YES + ForecastEx equivalent of NO")).to_be_visible()
        bars = _bars(cost)
        assert len(bars) > 1
        for i, (panel, x0, x1) in enumerate(bars):  # no two bars cover each other
            for other, y0, y1 in bars[i + 1 :]:
                if other == panel:
                    assert min(x1, y1) - max(x0, y0) <= 0.01, (x0, x1, y0, y1)
        cost.screenshot(path=str(OUT / "jupyterlab_spread_analysis_cost.png"))
        assert (OUT / "jupyterlab_spread_analysis.png").stat().st_size > 10_000
    except Exception:
        page.screenshot(path=str(OUT / "jupyterlab_spread_analysis_failure.png"))
        raise


def _parameter_tuning(page: Any, base: str, token: str) -> None:
    from playwright.sync_api import expect

    try:
        _open_and_run_all(page, base, token, "03_parameter_tuning.ipynb")
        expect(_output(page, "changed lines:")).to_be_visible(timeout=120_000)
        _plots(page, 5, 30_000)
        assert not _errors(page)
        expect(_output(page, "starting from")).to_contain_text("my_execution.toml")
        # both heatmaps: a dollar value written in every cell (4 edges × 3 sizes)
        for part in ("in-sample", "out-of-sample"):
            heat = _figure(page, f"Risk-adjusted score, {part}")
            heat.scroll_into_view_if_needed()
            cells = heat.locator(".heatmaplayer text, .textpoint text").all_text_contents()
            assert len(cells) == 12 and all("$" in c for c in cells), cells
        heat = _figure(page, "Risk-adjusted score, in-sample")
        heat.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        heat.screenshot(path=str(OUT / "jupyterlab_tuning_heatmap.png"))
        # stacked panels, each y axis titled (no unlabeled second axis)
        fee = _figure(page, "Sensitivity to the Kalshi taker coefficient")
        fee.scroll_into_view_if_needed()
        expect(fee.get_by_text("dollars", exact=True)).to_be_visible()
        expect(fee.get_by_text("count", exact=True)).to_be_visible()
        fee.screenshot(path=str(OUT / "jupyterlab_tuning_fee.png"))
        _output(page, "changed lines:").scroll_into_view_if_needed()
        page.screenshot(path=str(OUT / "jupyterlab_tuning.png"))
        assert (OUT / "jupyterlab_tuning_heatmap.png").stat().st_size > 5_000
    except Exception:
        page.screenshot(path=str(OUT / "jupyterlab_tuning_failure.png"))
        raise


def test_analysis_notebooks_in_jupyterlab(analysis_lab: tuple[str, str]) -> None:
    """02, then 03, in one JupyterLab and one browser (a fresh page and workspace each)."""
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    base, token = analysis_lab
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            _spread_analysis(page, base, token)
            page.close()
            # 02's kernel stopped and its tab forgotten: 03 opens alone, no kernel dialog
            auth = {"Authorization": f"token {token}"}
            for sess in httpx.get(f"{base}/api/sessions", headers=auth, timeout=10).json():
                httpx.delete(f"{base}/api/sessions/{sess['id']}", headers=auth, timeout=30)
            httpx.delete(f"{base}/lab/api/workspaces/default", headers=auth, timeout=10)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            _parameter_tuning(page, base, token)
        finally:
            browser.close()
