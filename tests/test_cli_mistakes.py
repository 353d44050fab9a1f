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
