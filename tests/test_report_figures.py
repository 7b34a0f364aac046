"""The report's figures, checked on their drawn data and labels against the run-folder files
(read here with json, numpy and torch, not through the report's code)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from report_fixtures import report, run, summary  # noqa: F401 - fixtures


def _labelled(fig) -> list[str]:
    bad = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if ax.get_label() == "<colorbar>":
            if not (ax.get_ylabel() or ax.get_xlabel()):
                bad.append("colorbar without a label")
            continue
        ylab = ax.get_ylabel() or any(o.get_ylabel() for o in ax.get_shared_y_axes().get_siblings(ax))
        if not ax.get_xlabel() or not ylab:
            bad.append(f"axes {ax.get_title()!r}: x {ax.get_xlabel()!r}, y {ax.get_ylabel()!r}")
    return bad


def test_every_figure_is_a_png_with_labelled_axes(report):
    from PIL import Image

    keys = [f.key for f in report.all_figures()]
    assert keys == ["forest", "convergence", "samples-1", "samples-2", "iou", "positions"]
    for f in report.all_figures():
        with Image.open(io.BytesIO(f.png())) as im:
            im.verify()
        assert _labelled(f.figure) == [], f.key
        assert f.caption and f.title


def test_forest_plot_draws_every_difference_with_its_ci(summary, report):
    from ada_core.runfolder import RunSummary
    from ada_core.report.forest import forest_figure

    comps = {(c["set"], c["branch"], c["control"], c["metric"]): c for c in summary["statistics"]["comparisons"]}
    fig = report.figures["forest"][0].figure
    axes = [a for a in fig.axes if a.get_title()]
    compared = summary["statistics"]["metrics"]
    assert [a.get_title() for a in axes] == [m.upper() for m in compared]
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    units = {"dsc": "points", "hsd": "mm", "fail": "points"}
    for ax, unit in zip(axes, (units[m] for m in compared), strict=True):
        assert f"({unit})" in ax.get_xlabel() and "positive = branch better" in ax.get_xlabel()
        assert any(list(ln.get_xdata()) == [0, 0] for ln in ax.get_lines())  # the zero line
        metric = ax.get_title().lower()
        drawn = [c for c in ax.containers]
        primary = summary["statistics"]["primary"]["set"]  # only the primary set is drawn
        assert f"on {primary}" in axes[0].get_ylabel()
        want = [(lab, comps[(primary, *lab.split(" \u2212 "), metric)]) for lab in labels]
        assert len(want) == len([k for k in comps if k[0] == primary and k[3] == metric and k[2] in summary["statistics"]["controls"]])
        want = [(i, c) for i, (_, c) in enumerate(want) if c["diff"] is not None]
        assert len(drawn) == len(want)
        for cont, (y, c) in zip(drawn, want, strict=True):
            x, yy = cont.lines[0].get_data()
            assert (float(x[0]), float(yy[0])) == (pytest.approx(c["diff"]), y)
            if c["ci"] is None:  # no interval (no variance): a point without bars
                assert not cont.lines[2] or not len(cont.lines[2][0].get_segments())
                continue
            lo, hi = cont.lines[2][0].get_segments()[0][:, 0]
            assert (lo, hi) == (pytest.approx(c["ci"]["low"]), pytest.approx(c["ci"]["high"]))
    # shown at its natural width on a 1280 px page (110 dpi), every label is at least 11 px
    w_px = fig.get_figwidth() * 110
    assert w_px <= 1280 - 40
    texts = [t for ax in axes for t in (*ax.get_yticklabels(), *ax.get_xticklabels(), ax.xaxis.label)]
    assert texts and min(t.get_fontsize() for t in texts) * 110 / 72 >= 11
    # a Holm-significant comparison is drawn differently (filled) from the others
    s = RunSummary.model_validate(summary)
    first = s.statistics.comparisons[0]
    changed = s.statistics.model_copy(update={"comparisons": (first.model_copy(update={"p_holm": 0.001}),
                                                              *s.statistics.comparisons[1:])})  # fmt: skip
    ax = forest_figure(s.model_copy(update={"statistics": changed})).figure.axes[0]
    faces = [tuple(c.lines[0].get_markerfacecolor()) for c in ax.containers]
    assert len(set(faces)) == 2 and faces.count(faces[0]) == 1


def test_convergence_figure_draws_the_seed_means(summary, run, report):
    fig = report.figures["convergence"][0].figure
    ax_std, ax_ada, ax_zoom = [a for a in fig.axes if a.get_title()]

    def curves(label):
        jobs = [j for j in summary["jobs"] if j["label"] == label and j["status"] == "done"]
        cs = []
        for j in jobs:
            rows = [json.loads(x) for x in (run / j["path"] / "metrics.jsonl").read_text().splitlines() if x]
            cs.append([r["metrics"]["dsc_mean"] for r in sorted(rows, key=lambda r: r["epoch"])])
        return np.array(cs, dtype=float)

    std = curves("standard")
    [line] = [ln for ln in ax_std.get_lines() if ln.get_label().startswith("standard")]
    assert np.allclose(line.get_ydata(), std.mean(0))
    for b in summary["branches"][1:]:
        c = curves(b["label"])
        [line] = [ln for ln in ax_ada.get_lines() if ln.get_label() == f"{b['label']} (n = {len(c)})"]
        assert np.allclose(line.get_ydata(), c.mean(0))
    bounds = [ln.get_xdata()[0] for ln in ax_ada.get_lines() if ln.get_linestyle() == ":"]
    per = summary["schedule"]["ada_epochs"]
    assert bounds == [per * k + 0.5 for k in range(1, summary["schedule"]["cycles"])]
    assert ax_zoom.get_xlim()[0] == 0.5 and ax_zoom.get_xlim()[1] <= c.shape[1] + 0.5
    assert "min" in report.figures["convergence"][0].caption.lower()


def test_sample_figures_show_the_saved_images(summary, run, report):
    import torch

    figs = report.figures["samples"]
    ada = [b["label"] for b in summary["branches"] if b["kind"] == "ada"]
    job = {j["label"]: j for j in summary["jobs"] if j["seed"] == 0}
    for i, f in enumerate(figs):
        panels = [a for a in f.figure.axes if a.get_label() != "<colorbar>"]
        assert len(panels) == 3 * len(ada)
        for r, label in enumerate(ada):
            saved = torch.load(run / job[label]["path"] / "samples.pt", weights_only=True)
            img, sal, ada_img = (panels[3 * r + k].get_images()[0].get_array() for k in range(3))
            assert np.allclose(img, saved["images"][i, 0].numpy())
            assert np.allclose(sal, saved["saliency"][i, 0].numpy())
            assert np.allclose(ada_img, saved["ada_images"][i, 0].numpy())
            assert panels[3 * r].get_ylabel().startswith(label)
        cbars = [a for a in f.figure.axes if a.get_label() == "<colorbar>"]
        assert len(cbars) == len(ada) and all("saliency" in a.get_ylabel() for a in cbars)


def test_iou_heat_map_masks_the_diagonal(summary, report):
    fig = report.figures["iou"][0].figure
    im = fig.axes[0].get_images()[0]
    data = im.get_array()
    m = np.array(summary["iou"]["matrix"], dtype=float)
    off = ~np.eye(len(m), dtype=bool)
    assert np.ma.getmaskarray(data)[~off].all() and not np.ma.getmaskarray(data)[off].any()
    assert im.get_clim() == (0.0, pytest.approx(m[off].max()))
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {f"{v:.2f}" for v in m[off]} <= texts


def test_positions_are_signed_changes_over_the_mean_image_in_mm(summary, run, report):
    fig = report.figures["positions"][0].figure
    panels = [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]
    for ax in panels:
        label = ax.get_title().split(" (")[0]
        jobs = [j for j in summary["jobs"] if j["label"] == label and j["status"] == "done"]
        evs = [json.loads((run / j["eval_path"] / "summary.json").read_text()) for j in jobs]
        want = np.nanmean([np.array(e["positions"]["dsc_change"], dtype=float) for e in evs], axis=0)
        mesh = ax.collections[0]
        assert np.allclose(np.asarray(mesh.get_array()).reshape(want.shape), want, equal_nan=True)
        norm = mesh.norm
        assert norm.vcenter == 0 and norm.vmin == -norm.vmax
        image = np.load(run / jobs[0]["eval_path"] / "mean_image.npy")
        sy, sx = evs[0]["spacing_mm"]
        assert ax.get_xlim() == (0, pytest.approx(image.shape[1] * sx))
        assert ax.get_xlabel() == "x (mm)" and ax.get_ylabel() == "y (mm)"
        assert np.allclose(ax.get_images()[0].get_array(), image)
