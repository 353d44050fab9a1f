"""Notebooks are committed without outputs, and the spread-analysis notebook runs
headless (nbclient, the venv's own python3 kernel) against the sample database."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SPREAD_ANALYSIS = NOTEBOOKS / "02_spread_analysis.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


def _points(values: Any) -> int:
    """Points in a trace's x or y as plotly serialises them: a list, or a typed array
    ``{"dtype": "f8", "bdata": <base64>}``."""
    if values is None:
        return 0
    if isinstance(values, dict):
        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values)


def _run(source: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(SPREAD_ANALYSIS, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'DB_PATH = "data/arbkit.sqlite"' in params[0].source
    params[0].source = params[0].source.replace(
        'DB_PATH = "data/arbkit.sqlite"', f"DB_PATH = {json.dumps(str(source))}"
    )
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # cwd as in JupyterLab
    )
    client.execute()
    return nb


@pytest.mark.parametrize("kind", ["sqlite", "parquet"])
def test_spread_analysis_notebook_executes(sample_db: Path, parquet_dir: Path, kind: str) -> None:
    nb = _run(sample_db if kind == "sqlite" else parquet_dir)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "realized PnL      $0.10" in text
    figures = [o.data[PLOTLY] for o in outputs if PLOTLY in o.get("data", {})]
    assert len(figures) == 8
    for fig in figures:
        assert fig["data"], fig["layout"]["title"]
        for trace in fig["data"]:
            assert max(_points(trace.get("x")), _points(trace.get("y"))) > 0, trace.get("name")
    tables = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("p50_usd" in t and "FED-25DEC" in t for t in tables)  # the percentiles frame
