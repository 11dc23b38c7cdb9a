"""Shared output for benchmark scripts: a JSON and a Markdown table under benchmarks/results/."""
from __future__ import annotations

import json
from pathlib import Path

from controller.report import machine

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, payload: dict, rows: list[dict], title: str, notes: str = "") -> None:
    """Write ``results/<name>.json`` (payload + rows + machine) and ``results/<name>.md`` (rows as a table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({**payload, "rows": rows, "machine": machine()}, indent=2))
    keys = list(rows[0]) if rows else []
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# {title}", "", notes, "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
