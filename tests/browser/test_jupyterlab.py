"""Real browser: JupyterLab on loopback, 01_live_monitor in headless Chromium (Debian's
``chromium`` driven by Playwright), Run All, then check that the plotly figure renders
with data, a slider change reaches the running monitor, and the kill switch shows its
state. A screenshot goes to ``test-output/jupyterlab_dashboard.png``.

Chromium is installed by ``make browser-deps`` (part of ``make test``); outside CI a
machine without it skips this test, in CI it must run.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from tests.notebooks.nbrun import NOTEBOOKS, with_parameters

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-output" / "jupyterlab_dashboard.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# start the notebook's kernel without asking, and no news pop-up
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": (
        '{"autoStartDefaultKernel": true}'
    ),
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": (
        '{"fetchNews": "false", "checkForUpdates": false}'
    ),
}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyterlab(root: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on loopback serving ``root`` (its settings, config and runtime
    under ``tmp_path``); yields (base URL, token) once it answers, stops it after."""
    token = secrets.token_hex(16)
    port = free_port()
    env = dict(os.environ)
    for k in ("config", "runtime"):
        (tmp_path / k).mkdir()
    settings = tmp_path / "lab-settings"
    for rel, text in LAB_SETTINGS.items():
        f = settings / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        TMPDIR=str(tmp_path),  # the kernel's local venues keep their files here
    )
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{base}/api/status", params={"token": token}, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()
                )
            time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab serving a copy of 01_live_monitor with short-run parameters."""
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.read(NOTEBOOKS / "01_live_monitor.ipynb", as_version=4)
    params = {
        "RUN_SECONDS": None,  # keep running: the test drives the controls
        "N_SYMBOLS": 6,
        "SEED": 7,
        "MODE": "paper",
        "DB_PATH": None,
        "REFRESH_HZ": 4,
        "USE_REAL_VENUES": False,
        "DISLOCATIONS_PER_MIN": 20.0,  # some paper executions for the PnL panel
        "TOP_N": 3,
        "ALERT_STALE_MS": 5000,
        "ALERT_LARGE_EDGE_USD": "0.10",
        "WEBHOOK_URL": None,
    }
    nbformat.write(with_parameters(nb, params), root / "01_live_monitor.ipynb")
    nb4 = nbformat.read(NOTEBOOKS / "04_contract_matching.ipynb", as_version=4)
    params4 = {
        "SOURCE": "local",
        "CATALOGUE": str(tmp_path / "catalogue.json"),
        "THRESHOLD": 70,
        "VERIFIED_BY": "",
        "OUT": str(tmp_path / "matched.toml"),
        "CONFIRM_ALL": False,
    }
    nbformat.write(with_parameters(nb4, params4), root / "04_contract_matching.ipynb")
    with jupyterlab(root, tmp_path) as served:
        yield served


def _chromium() -> str:
    exe = chromium_path()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed in CI (make browser-deps installs it)")
        pytest.skip("chromium not installed (run `make browser-deps` as root)")
    return exe


def _open_and_run_all(page: Any, base: str, token: str, name: str) -> None:
    from playwright.sync_api import expect

    page.set_default_timeout(30_000)
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=45_000)
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    if dialog.count():  # "Select Kernel", should the setting not apply
        dialog.first.click()
    expect(page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first).to_be_visible(
        timeout=45_000
    )
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-item[data-command="runmenu:run-all"]')


def test_contract_matching_review_in_jupyterlab(lab: tuple[str, str]) -> None:
    """Notebook 04 in a real browser: the proposals render with both rule texts and the
    differences highlighted; a confirm click reaches the widget's count."""
    exe = _chromium()
    from playwright.sync_api import expect, sync_playwright

    base, token = lab
    shot = SCREENSHOT.with_name("jupyterlab_matching.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1500})
        try:
            _open_and_run_all(page, base, token, "04_contract_matching.ipynb")
            pairs = page.locator(".arbkit-pair")
            pairs.first.wait_for(timeout=90_000)
            assert pairs.count() == 26
            assert page.locator(".arbkit-pair .arbkit-only").count() > 0  # differences
            status = page.get_by_text("0 confirmed, 0 rejected, 26 undecided")
            expect(status).to_be_visible()
            page.locator(".widget-toggle-button", has_text="confirm").first.click()
            expect(page.get_by_text("1 confirmed, 0 rejected, 25 undecided")).to_be_visible()
            pairs.first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
        except Exception:
            page.screenshot(path=str(SCREENSHOT.with_name("jupyterlab_matching_failure.png")))
            raise
        finally:
            browser.close()


def test_dashboard_in_jupyterlab(lab: tuple[str, str]) -> None:
    """01 at a laptop's 1280×800: every figure fits the width (legend not clipped), the
    cost chart shows the N symbols closest to an edge and the threshold line, a slider
    change reaches the monitor (read back in dollars), a fee typo is refused next to its
    box, the kill switch shows its state and raises the "trading halted" alert."""
    exe = _chromium()
    from playwright.sync_api import expect, sync_playwright

    base, token = lab
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    width, height = 1280, 800
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": width, "height": height})
        try:
            _open_and_run_all(page, base, token, "01_live_monitor.ipynb")

            # the plotly figure renders with data: line paths with points in them
            dash = page.locator(".arbkit-dashboard")
            dash.wait_for(timeout=45_000)
            page.wait_for_function(
                """() => [...document.querySelectorAll(
                      '.arbkit-cost-fig .scatterlayer .trace path.js-line')]
                      .some(p => (p.getAttribute('d') || '').split(/[LM]/).length > 3)""",
                timeout=30_000,
            )
            applied = page.locator(".arbkit-applied")
            expect(applied).to_contain_text("min edge $0.01/contract")

            # the N = 3 closest symbols (+ the selected one when not among them), not 12
            # lines; the dashed threshold line after fees is drawn
            legend = page.locator(".arbkit-cost-fig .legend .traces")
            expect(legend.first).to_be_visible()
            assert 3 <= legend.count() <= 4, legend.count()
            expect(
                page.locator(".arbkit-cost-fig").get_by_text("threshold after fees")
            ).to_be_visible()

            # every figure fits the viewport's width: nothing (legend included) clipped
            for fig in ("cost", "selected", "book", "pnl", "latency"):
                svg = page.locator(f".arbkit-{fig}-fig .main-svg").first
                svg.wait_for(timeout=30_000)
                svg.scroll_into_view_if_needed()
                box = svg.bounding_box()
                assert box is not None and box["width"] > 400, (fig, box)
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (fig, box)
                for lg in page.locator(f".arbkit-{fig}-fig .legend").all():
                    lb = lg.bounding_box()
                    assert lb is not None and lb["x"] + lb["width"] <= box["x"] + box["width"]
            # a slider change (keyboard on the handle) reaches the monitor; the label is
            # read back from monitor.config, not from the slider, in dollars
            handle = page.locator(".arbkit-min-edge .noUi-handle")
            handle.focus()
            for _ in range(5):
                handle.press("ArrowRight")
            readout = page.locator(".arbkit-min-edge .widget-readout")
            expect(readout).not_to_have_text("1.0")
            cents = float(readout.inner_text())
            assert cents != 1.0
            dollars = f"${cents / 100:.4f}".rstrip("0").rstrip(".")
            expect(applied).to_contain_text(f"min edge {dollars}/contract")

            # a fee typo is refused next to the box, the monitor keeps 0.07
            box_in = page.locator(".arbkit-kalshi-fee input")
            box_in.fill("5")
            box_in.press("Enter")
            msg = page.locator(".arbkit-kalshi-fee-msg")
            expect(msg).to_contain_text("refused, not applied")
            expect(msg).to_contain_text("out of range 0..0.5")
            expect(applied).to_contain_text("Kalshi taker coefficient 0.07")

            # the kill switch shows its state, and the alert list says trading is halted
            kill_state = page.locator(".arbkit-kill-state")
            expect(kill_state).to_contain_text("kill switch off")
            page.locator("button.arbkit-kill").click()
            expect(kill_state).to_contain_text("KILL SWITCH ON")
            expect(page.locator(".arbkit-alerts .arbkit-alert-halted")).to_contain_text(
                "trading halted"
            )
            expect(page.locator(".arbkit-status")).to_contain_text("ticks")
            text = dash.inner_text()
            assert re.search(r"ticks [\d,]+", text)

            # what a trader sees at 1280×800, section by section (the notebook scrolls)
            for name, anchor in (
                ("jupyterlab_dashboard.png", ".arbkit-status"),
                ("jupyterlab_dashboard_charts.png", ".arbkit-cost-fig"),
                ("jupyterlab_dashboard_book.png", ".arbkit-ladder-kalshi"),
                ("jupyterlab_dashboard_pnl.png", ".arbkit-pnl-fig"),
                ("jupyterlab_dashboard_latency.png", ".arbkit-latency-fig"),
            ):
                page.locator(anchor).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(400)
                page.screenshot(path=str(SCREENSHOT.with_name(name)))
            assert SCREENSHOT.stat().st_size > 10_000
        except Exception:
            page.screenshot(path=str(SCREENSHOT.with_name("jupyterlab_failure.png")))
            SCREENSHOT.with_name("jupyterlab_failure.html").write_text(page.content())
            raise
        finally:
            browser.close()
