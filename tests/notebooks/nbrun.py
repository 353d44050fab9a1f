"""Run a repository notebook headless with injected parameters (nbclient, the venv's
ipykernel) and read back JSON that extra cells print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
MARK = "ARBKIT-JSON:"


def with_parameters(nb: Any, params: dict[str, Any]) -> Any:
    """Replace the source of the cell tagged ``parameters`` (papermill's convention)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    cells[0].source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    return nb


def run_notebook(
    name: str,
    params: dict[str, Any],
    probe: str,
    *,
    cwd: Path,
    setup: str = "",
    timeout_s: int = 240,
) -> tuple[Any, dict[str, Any]]:
    """Execute ``notebooks/<name>`` with ``params``, then ``setup`` (statements), then
    ``probe`` (an expression whose value must be JSON-serialisable) in the same kernel;
    return (notebook, value)."""
    nb = with_parameters(nbformat.read(NOTEBOOKS / name, as_version=4), params)
    if setup:
        nb.cells.append(nbformat.v4.new_code_cell(setup))
    nb.cells.append(
        nbformat.v4.new_code_cell(f"import json as _j\nprint({MARK!r} + _j.dumps({probe}))")
    )
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    for out in nb.cells[-1].outputs:
        for line in out.get("text", "").splitlines():
            if line.startswith(MARK):
                return nb, json.loads(line[len(MARK) :])
    raise AssertionError(f"no probe output: {nb.cells[-1].outputs!r}")


def error_outputs(nb: Any) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
