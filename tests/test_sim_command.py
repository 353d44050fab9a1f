"""``arbkit sim`` prints a monitor command that works when pasted into a shell; a Kalshi
key the venue rejects makes that monitor stop at once, with a hint, exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def sim_command(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp_path = tmp_path_factory.mktemp("sim")
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbkit.cli", "sim", "--seconds", "120", "--data-dir",
         str(tmp_path / "sim")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        command = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = sim.stdout.readline()
            if "arbkit monitor" in line or " monitor --symbols" in line:
                command = line.strip()
                break
        assert command.startswith("KALSHI_API_KEY_ID="), command
        yield command, tmp_path
    finally:
        sim.terminate()
        sim.wait(20)


def test_sim_prints_a_monitor_command_that_runs(sim_command: tuple[str, Path]) -> None:
    command, tmp_path = sim_command
    run = subprocess.run(
        f"{command} --seconds 3 --db {tmp_path / 'm.sqlite'}",
        shell=True, capture_output=True, text=True, timeout=90,  # same directory
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "m.sqlite").exists()


def test_rejected_kalshi_key_is_fatal_with_a_hint(sim_command: tuple[str, Path]) -> None:
    """A key id the venue does not know: 401 at start. Not an endless reconnect loop
    that exits 0 — one line naming the key, the URL and the environment, exit 2."""
    command, tmp_path = sim_command
    bad = re.sub(
        r"KALSHI_API_KEY_ID=\S+", "KALSHI_API_KEY_ID=00000000-0000-0000-0000-0000000bad", command
    )
    run = subprocess.run(
        f"{bad} --seconds 30 --db {tmp_path / 'bad.sqlite'}",
        shell=True, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("arbkit monitor: error:")]
    assert len(errors) == 1, run.stderr[-2000:]
    line = errors[0]
    assert "Kalshi rejected API key 00000000-0000-0000-0000-0000000bad" in line, line
    assert "HTTP 401" in line and "--kalshi-env custom" in line and "prod" in line, line
    assert "Traceback" not in run.stderr
