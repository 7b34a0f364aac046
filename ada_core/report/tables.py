"""The paper's Table 3 (validation) and Table 4 (robustness) for every branch, as text.

A table row is the ``summarize`` output of :mod:`ada_core.metrics` (``dsc_mean``,
``dsc_std``, ...). Rows are printed as ``mean +- std``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ada_core.report.curves import format_convergence

__all__ = ["COLUMNS", "format_iou", "format_summary", "format_table"]

#: (header, metric key, unit) of the paper's tables.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("DSC %", "dsc"),
    ("HSD mm", "hsd"),
    ("TPR %", "tpr"),
    ("TNR %", "tnr"),
    ("PPV %", "ppv"),
)


def _cell(row: Mapping[str, Any], key: str) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    return f"{mean:.2f} +- {std:.2f}"


def format_table(
    title: str, rows: Mapping[str, Mapping[str, Any]], extra: Mapping[str, str] | None = None
) -> str:
    """A plain-text table: one row per branch label, the paper's five metrics as columns.

    Args:
        title: printed above the table.
        rows: label -> summary metrics (``{metric}_mean`` / ``{metric}_std``).
        extra: optional label -> text of a last column (e.g. the best epoch).
    """
    header = ["branch", *(h for h, _ in COLUMNS)] + (["best epoch"] if extra else [])
    body = [
        [label, *(_cell(row, key) for _, key in COLUMNS)]
        + ([extra.get(label, "")] if extra else [])
        for label, row in rows.items()
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    rule = "-" * len(line(header))
    return "\n".join([title, rule, line(header), rule, *(line(r) for r in body), rule])


def format_iou(names: Sequence[str], matrix: Sequence[Sequence[float]]) -> str:
    """The first-cycle erased-region IoU matrix between attributors (the paper's Figure 4)."""
    width = max([len(n) for n in names] + [6])
    head = " " * width + "  " + "  ".join(n[:width].rjust(width) for n in names)
    rows = [
        n.ljust(width) + "  " + "  ".join(f"{v:.3f}".rjust(width) for v in row)
        for n, row in zip(names, matrix, strict=True)
    ]
    return "\n".join(["First-cycle erased-region IoU", head, *rows])


def format_summary(summary: Mapping[str, Any]) -> str:
    """Table 3, Table 4, convergence and the IoU matrix of a run's ``summary.json``."""
    rows = {"standard": summary["standard"], **summary["branches"]}
    best = {k: f"{v['best_epoch']} (cycle {v['best_cycle']})" for k, v in rows.items()}
    parts = [
        format_table(
            "Table 3: validation, best-validation epoch of each branch",
            {k: v["validation"] for k, v in rows.items()},
            best,
        )
    ]
    rob = {k: v["robustness"] for k, v in rows.items() if v.get("robustness")}
    if rob:
        z = summary.get("robustness_size")
        parts.append(format_table(f"Table 4: robustness set (Algorithm 2, Z = {z})", rob))
    for key in summary.get("evaluate", []):
        parts.append(
            format_table(
                f"Extra evaluation {key!r}: best-validation checkpoint of each branch",
                {k: v["evaluate"][key] for k, v in rows.items() if key in v.get("evaluate", {})},
            )
        )
    if summary.get("convergence"):
        parts.append(format_convergence(summary["convergence"]))
    iou = summary.get("iou")
    if iou and iou.get("names"):
        parts.append(format_iou(iou["names"], iou["matrix"]))
    return "\n\n".join(parts) + "\n"
