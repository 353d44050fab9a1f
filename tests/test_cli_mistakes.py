"""Every user mistake gets one clear line on stderr and exit 2 — never a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SYMBOLS = str(Path(__file__).resolve().parents[1] / "arbkit" / "examples" / "symbols.toml")


def arbkit(*args: str, cwd: Path) -> tuple[int, str]:
    p = subprocess.run(
        [sys.executable, "-m", "arbkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    return p.returncode, p.stderr


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "garbage.sqlite").write_bytes(b"garbage")
    (tmp_path / "empty.sqlite").touch()
    con = sqlite3.connect(tmp_path / "other.sqlite")
    con.execute("CREATE TABLE t (x)")
    con.close()
    (tmp_path / "cap.jsonl").write_text("{}\n")
    (tmp_path / "dir").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (("analyze", "--db", "garbage.sqlite"), "garbage.sqlite: not an SQLite file"),
        (("analyze", "--db", "empty.sqlite"), "empty.sqlite: empty file"),
        (("analyze", "--db", "other.sqlite"), "other.sqlite: an SQLite file but not an arbkit"),
        (("export", "parquet", "--db", "garbage.sqlite"), "garbage.sqlite: not an SQLite file"),
        (("demo", "--symbols", "0"), "--symbols 0: use 1 or more"),
        (("demo", "--record", "cap.jsonl"), "--record cap.jsonl: the file exists"),
        (("replay", "dir", "--symbols", SYMBOLS), "dir is a directory"),
        (
            ("sweep", "cap.jsonl", "--symbols", SYMBOLS, "--grid", "detector.min_edge_usd=0.01",
             "--jobs", "0"),
            "--jobs 0: use 1 or more",
        ),
        (
            ("sweep", "cap.jsonl", "--symbols", SYMBOLS, "--grid", "mode=live,paper"),
            "--grid mode=live,paper: a sweep replays in paper mode only",
        ),
        (("demo", "--set", "mode=live"), "--set mode=live: the demo trades against local"),
        (
            ("replay", "cap.jsonl", "--symbols", SYMBOLS, "--set", "mode=live"),
            "--set mode=live: a replay never sends orders",
        ),
    ],
)  # fmt: skip
def test_mistake_is_one_line_and_exit_2(
    files: Path, args: tuple[str, ...], first_line: str
) -> None:
    rc, err = arbkit(*args, cwd=files)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"arbkit {args[0]}: error: {first_line}"), lines[0]


def test_config_check_and_show(tmp_path: Path) -> None:
    import tomllib

    ok = subprocess.run(
        [sys.executable, "-m", "arbkit.cli", "config", "check", SYMBOLS],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.startswith(f"{SYMBOLS}: ok — symbol map, 2 symbols")
    bad = tmp_path / "bad.toml"
    bad.write_text('[fees]\nkalshi_taker_coefficient = "7"\n')
    rc, err = arbkit("config", "check", str(bad), cwd=tmp_path)
    assert rc == 2 and err.count("\n") == 1 and "kalshi_taker_coefficient: 7 is out of range" in err
    show = subprocess.run(
        [sys.executable, "-m", "arbkit.cli", "config", "show", "--set",
         "detector.min_edge_usd=0.02"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert show.returncode == 0
    assert tomllib.loads(show.stdout)["detector"]["min_edge_usd"] == "0.02"


def test_a_capture_cut_off_by_a_crash_replays_up_to_the_damage(tmp_path: Path) -> None:
    """A truncated gzip and a half-written last line: replay reads what is there, says
    how many lines were skipped and where; --strict keeps the refusal (exit 2)."""
    import gzip

    from benchmarks.capture_gen import generate

    cap, sym = tmp_path / "c.jsonl", tmp_path / "s.toml"
    with cap.open("wb") as fh:
        generate(fh, 3_000, 4, 3, sym)
    data = cap.read_bytes()
    whole = gzip.compress(data)
    (tmp_path / "t.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (tmp_path / "h.jsonl").write_bytes(data[:-37])
    for name, where in (("t.jsonl.gz", "truncated or corrupt gzip"), ("h.jsonl", "h.jsonl:3000")):
        p = subprocess.run(
            [sys.executable, "-m", "arbkit.cli", "replay", name, "--symbols", str(sym),
             "--quiet"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert "warning: 1 damaged lines skipped" in p.stderr and where in p.stderr
        assert "events (0 bad frames)" in p.stdout
        rc, err = arbkit("replay", name, "--symbols", str(sym), "--quiet", "--strict", cwd=tmp_path)
        assert rc == 2 and err.count("\n") == 1 and where in err, err


@pytest.mark.parametrize("flag", [("--set", "mode=live"), ("--mode", "live")], ids=["set", "mode"])
def test_monitor_live_by_flag_blames_the_flag_not_the_file(
    tmp_path: Path, flag: tuple[str, str]
) -> None:
    """The example execution.toml says paper; ``--set mode=live`` (or ``--mode live``)
    without confirmation is refused before anything connects — naming the flag."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    example = str(Path(SYMBOLS).with_name("execution.toml"))
    env = {**os.environ, "KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY_PATH": str(pem)}
    env.pop("ARBKIT_CONFIRM_LIVE", None)
    p = subprocess.run(
        [sys.executable, "-m", "arbkit.cli", "monitor", "--symbols", SYMBOLS, "--execution",
         example, *flag, "--kalshi-env", "custom", "--kalshi-rest", "http://127.0.0.1:9",
         "--kalshi-ws", "ws://127.0.0.1:9", "--db", str(tmp_path / "m.sqlite")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    [line] = p.stderr.strip().splitlines()
    said = " ".join(flag) if flag[0] == "--mode" else "=".join(flag).replace("=", " ", 1)
    assert line.startswith(f'arbkit monitor: error: {said} sets mode = "live"'), line
    assert example not in line


def test_second_demo_on_a_database_in_use_is_one_line(tmp_path: Path) -> None:
    """A database written by a running monitor is locked: a second demo on it says so
    (exit 2). Each demo has its own run directory; piped output is not wrapped."""
    import time

    first = subprocess.Popen(
        [sys.executable, "-m", "arbkit.cli", "demo", "--seconds", "30", "--no-ui", "--db",
         "x.sqlite", "--data-dir", "d1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        deadline = time.monotonic() + 60
        lines = []
        while "t=" not in (line := first.stdout.readline()):  # first progress line: running
            lines.append(line)
            assert time.monotonic() < deadline and first.poll() is None
        # not a terminal: no hard wrap at 80 columns; the banner names its run directory
        banner = next(ln for ln in lines if ln.startswith("arbkit demo:"))
        assert len(banner) > 100 and "run directory d1/runs/demo-" in banner, lines
        assert "venues=" in line, line  # the progress line is whole too
        rc, err = arbkit("demo", "--seconds", "3", "--db", "x.sqlite", "--data-dir", "d2",
                         cwd=tmp_path)  # fmt: skip
        assert rc == 2, err
        [line] = err.strip().splitlines()
        assert line.startswith("arbkit demo: error: database x.sqlite is in use by another"), line
    finally:
        first.terminate()
        first.wait(30)
