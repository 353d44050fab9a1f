"""``arbkit sim`` prints a monitor command that works when pasted into a shell."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def test_sim_prints_a_monitor_command_that_runs(tmp_path: Path) -> None:
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbkit.cli", "sim", "--seconds", "60", "--data-dir",
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
        run = subprocess.run(
            f"{command} --seconds 3 --db {tmp_path / 'm.sqlite'}",
            shell=True, capture_output=True, text=True, timeout=90,  # same directory
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert (tmp_path / "m.sqlite").exists()
    finally:
        sim.terminate()
        sim.wait(20)
