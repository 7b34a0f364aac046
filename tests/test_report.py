"""Convergence numbers and the summary text, against hand-computed cases."""

from __future__ import annotations

import json
import math

from ada_core.report import convergence, format_convergence, read_curve, save_convergence_plot


def test_convergence_hand_computed():
    curves = {"gradcam": [60.0, 78.0, 80.0], "none": [50.0, 70.0, 77.0], "bad": [10.0, math.nan, 20.0]}
    conv = convergence(curves, fraction=0.95)
    assert conv["target"] == 0.95 * 80.0  # 76.0
    rows = conv["branches"]
    assert rows["gradcam"] == {"epochs_to_target": 2, "mean_dsc": (60 + 78 + 80) / 3}
    assert rows["none"]["epochs_to_target"] == 3
    assert rows["bad"] == {"epochs_to_target": None, "mean_dsc": 15.0}  # NaN left out, not 0
    text = format_convergence(conv)
    assert "DSC >= 76.00" in text and "never" in text


def test_read_curve_orders_by_epoch_and_plot(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"epoch": 2, "metrics": {"dsc_mean": 5.0}}, {"epoch": 1, "metrics": {"dsc_mean": 3.0}},
            {"epoch": 3, "metrics": {"dsc_mean": None}}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = read_curve(path)
    assert curve[:2] == [3.0, 5.0] and math.isnan(curve[2])
    png = save_convergence_plot([1.0, 2.0], {"x": [3.0, 5.0]}, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
