"""Metrics against hand-computed counts, scipy distance transforms and directed_hausdorff."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist, directed_hausdorff

from ada_core import surface
from ada_core.errors import InputError
from ada_core.metrics import (
    concat_metrics,
    legacy_hausdorff,
    per_volume_metrics,
    segmentation_metrics,
    summarize,
    volume_metrics,
)
from conftest import SHARED_DATA

DATA = SHARED_DATA / "sct-testing-t2s"


def scipy_surface(pred: np.ndarray, target: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """medpy-style directed surface distances via scipy's exact Euclidean distance transform."""
    st = ndimage.generate_binary_structure(pred.ndim, 1)
    pb = pred ^ ndimage.binary_erosion(pred, st)
    tb = target ^ ndimage.binary_erosion(target, st)
    d_pt = ndimage.distance_transform_edt(~tb, sampling=spacing)[pb]
    d_tp = ndimage.distance_transform_edt(~pb, sampling=spacing)[tb]
    return d_pt, d_tp


def scipy_hsd_hd95(pred, target, spacing):
    d_pt, d_tp = scipy_surface(pred, target, spacing)
    return max(d_pt.max(), d_tp.max()), np.percentile(np.hstack([d_pt, d_tp]), 95)


def blobs(gen: np.random.Generator, shape, threshold=0.6) -> np.ndarray:
    """Random smooth blobs (several components, holes) that are never empty."""
    field = ndimage.gaussian_filter(gen.random(shape), 1.5)
    field = (field - field.min()) / (field.max() - field.min())
    out = field > threshold
    out.flat[gen.integers(out.size)] = True
    return out


def test_confusion_ratios_hand_computed():
    # tp=3 fp=2 fn=1 tn=10 (counted by hand on the 4x4 arrays)
    pred = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    target = torch.tensor(
        [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool
    )
    m = segmentation_metrics(pred[None, None], target[None, None].float(), [1.0, 1.0])
    assert m["dsc"].item() == pytest.approx(100 * 6 / 9)
    assert m["tpr"].item() == pytest.approx(75.0)
    assert m["tnr"].item() == pytest.approx(100 * 10 / 12)
    assert m["ppv"].item() == pytest.approx(60.0)


def test_confusion_ratios_random_against_numpy():
    gen = np.random.default_rng(0)
    pred = gen.random((7, 1, 9, 11)) > 0.5
    target = gen.random((7, 1, 9, 11)) > 0.6
    m = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(target).double(), [1.0, 2.0])
    for i in range(7):
        p, t = pred[i], target[i]
        tp, fp = np.sum(p & t), np.sum(p & ~t)
        fn, tn = np.sum(~p & t), np.sum(~p & ~t)
        assert m["dsc"][i].item() == pytest.approx(200 * tp / (2 * tp + fp + fn))
        assert m["tpr"][i].item() == pytest.approx(100 * tp / (tp + fn))
        assert m["tnr"][i].item() == pytest.approx(100 * tn / (tn + fp))
        assert m["ppv"][i].item() == pytest.approx(100 * tp / (tp + fp))


@pytest.mark.parametrize("budget", [None, 7])
def test_hausdorff_against_scipy_anisotropic(monkeypatch, budget):
    if budget is not None:  # tiny memory budget: exercises the blocked distance path
        monkeypatch.setattr(surface, "_DIST_BUDGET", budget)
    gen = np.random.default_rng(1)
    b, h, w = 6, 24, 31
    pred = np.stack([blobs(gen, (h, w)) for _ in range(b)])
    target = np.stack([blobs(gen, (h, w)) for _ in range(b)])
    spacing = gen.uniform(0.3, 1.2, size=(b, 2))
    m = segmentation_metrics(
        torch.from_numpy(pred)[:, None],
        torch.from_numpy(target)[:, None].float(),
        torch.from_numpy(spacing),
        chunk=4,
    )
    for i in range(b):
        hsd, hd95 = scipy_hsd_hd95(pred[i], target[i], spacing[i])
        assert m["hsd"][i].item() == pytest.approx(hsd, abs=1e-9)
        assert m["hd95"][i].item() == pytest.approx(hd95, abs=1e-9)


def test_hausdorff_hand_case_and_cdist():
    pred = torch.zeros(1, 1, 6, 6)
    target = torch.zeros(1, 1, 6, 6)
    pred[0, 0, 0, 0] = 1
    target[0, 0, 3, 4] = 1
    m = segmentation_metrics(pred, target, [2.0, 1.0])
    assert m["hsd"].item() == pytest.approx(math.sqrt(6**2 + 4**2))
    assert m["hd95"].item() == pytest.approx(math.sqrt(6**2 + 4**2))
    # two filled squares: every pixel of a 3x3 square but the centre is boundary
    pred = torch.zeros(1, 1, 9, 9)
    target = torch.zeros(1, 1, 9, 9)
    pred[0, 0, 1:4, 1:4] = 1
    target[0, 0, 4:7, 2:5] = 1
    sp = np.array([0.7, 1.3])
    pb = [(r, c) for r in range(1, 4) for c in range(1, 4) if (r, c) != (2, 2)]
    tb = [(r, c) for r in range(4, 7) for c in range(2, 5) if (r, c) != (5, 3)]
    d = cdist(np.array(pb) * sp, np.array(tb) * sp)
    ref = max(d.min(1).max(), d.min(0).max())
    assert segmentation_metrics(pred, target, sp.tolist())["hsd"].item() == pytest.approx(ref)


def test_masks_touching_the_border_against_scipy():
    # Pixels on the image border are boundary (outside counts as background), also after the
    # implementation crops to the masks' bounding box.
    pred = np.zeros((3, 10, 12), dtype=bool)
    target = np.zeros((3, 10, 12), dtype=bool)
    pred[0, 0:4, 0:5] = target[0, 2:7, 1:4] = True
    pred[1, :, 9:] = target[1, 5:, :] = True
    pred[2] = True
    target[2, 3:5, 3:9] = True
    m = segmentation_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [0.7, 0.4]
    )
    for i in range(3):
        hsd, hd95 = scipy_hsd_hd95(pred[i], target[i], (0.7, 0.4))
        assert m["hsd"][i].item() == pytest.approx(hsd, abs=1e-9)
        assert m["hd95"][i].item() == pytest.approx(hd95, abs=1e-9)


def noisy_slices(gen: np.random.Generator, b: int, h: int, w: int):
    """Hard cases for the surface search, slice by slice: stray pixels far from the object,
    empty slices, masks on the border, a whole-image mask, a single pixel in a corner."""
    pred = np.zeros((b, h, w), dtype=bool)
    target = np.zeros((b, h, w), dtype=bool)
    for i in range(b):
        t = blobs(gen, (h, w), 0.7)
        p = np.roll(t, tuple(gen.integers(-2, 3, size=2)), (0, 1))
        n = gen.integers(1, 4)
        p[gen.integers(0, h, n), gen.integers(0, w, n)] = True  # stray, anywhere
        if i % 4 == 1:
            t[gen.integers(0, h), gen.integers(0, w)] = True
        pred[i], target[i] = p, t
    pred[2] = False  # empty prediction
    target[3] = False  # empty target
    pred[4], target[4] = False, False  # both empty
    pred[5, :, -1] = True  # a column on the border
    pred[6] = True  # the whole image
    pred[7], target[7] = False, False
    pred[7, 0, 0] = target[7, -1, -1] = True  # opposite corners: the largest distance
    return pred, target


@pytest.mark.parametrize("budget", [None, 5])
@pytest.mark.parametrize("pairs", [None, 0, 1e9])  # default switch, lines only, pairs only
@pytest.mark.parametrize("spacing", [(0.5, 0.5), (0.1, 3.0), (3.0, 0.1)])
def test_noisy_masks_against_scipy(monkeypatch, budget, pairs, spacing):
    if budget is not None:
        monkeypatch.setattr(surface, "_DIST_BUDGET", budget)
    if pairs is not None:
        monkeypatch.setattr(surface, "_PAIRS_PER_LINE", pairs)
    gen = np.random.default_rng(11)
    b, h, w = 12, 23, 37
    pred, target = noisy_slices(gen, b, h, w)
    m = segmentation_metrics(
        torch.from_numpy(pred)[:, None].float(),
        torch.from_numpy(target)[:, None],
        spacing,
        chunk=5,
    )
    for i in range(b):
        if not pred[i].any() or not target[i].any():
            assert math.isnan(m["hsd"][i]) and math.isnan(m["hd95"][i])
            continue
        hsd, hd95 = scipy_hsd_hd95(pred[i], target[i], spacing)
        assert m["hsd"][i].item() == pytest.approx(hsd, abs=1e-9), i
        assert m["hd95"][i].item() == pytest.approx(hd95, abs=1e-9), i


def test_noisy_masks_with_per_slice_spacing_against_scipy():
    # The search boxes grow from the finest spacing of the batch; each slice stops by its own.
    gen = np.random.default_rng(12)
    b, h, w = 12, 30, 26
    pred, target = noisy_slices(gen, b, h, w)
    spacing = np.exp(gen.uniform(np.log(0.05), np.log(4.0), size=(b, 2)))
    m = segmentation_metrics(
        torch.from_numpy(pred)[:, None],
        torch.from_numpy(target)[:, None],
        torch.from_numpy(spacing),
    )
    for i in range(b):
        if pred[i].any() and target[i].any():
            hsd, hd95 = scipy_hsd_hd95(pred[i], target[i], spacing[i])
            assert m["hsd"][i].item() == pytest.approx(hsd, abs=1e-9), i
            assert m["hd95"][i].item() == pytest.approx(hd95, abs=1e-9), i


@pytest.mark.parametrize("pairs", [None, 0, 1e9])
@pytest.mark.parametrize("thickness", [0.2, 2.5, 40.0])
def test_noisy_volume_against_scipy_3d(monkeypatch, thickness, pairs):
    if pairs is not None:
        monkeypatch.setattr(surface, "_PAIRS_PER_LINE", pairs)
    gen = np.random.default_rng(13)
    pred, target = noisy_slices(gen, 9, 17, 21)
    pred[4] = target[4] = True  # a full slice in the middle
    m = volume_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [0.6, 0.9], thickness
    )
    hsd, hd95 = scipy_hsd_hd95(pred, target, (thickness, 0.6, 0.9))
    assert m["hsd"].item() == pytest.approx(hsd, abs=1e-9)
    assert m["hd95"].item() == pytest.approx(hd95, abs=1e-9)


def test_directed_distances_against_brute_force():
    # Every directed distance (not only the max and the percentile), stray points included.
    gen = np.random.default_rng(14)
    b, h, w = 6, 19, 24
    pred, target = noisy_slices(gen, b + 2, h, w)
    pred, target = pred[:b], target[:b]
    spacing = gen.uniform(0.2, 2.0, size=(b, 2))
    d_pt, d_tp = surface.directed_sets(
        torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(spacing)
    )
    for i in range(b):
        ref_pt, ref_tp = scipy_surface(pred[i], target[i], spacing[i])
        for got, ref, other in ((d_pt[i], ref_pt, target[i]), (d_tp[i], ref_tp, pred[i])):
            got = got[~torch.isnan(got)].numpy()
            if not other.any():
                assert np.isinf(got).all() and got.size == ref.size
                continue
            np.testing.assert_allclose(got, ref, atol=1e-9)  # both in row-major pixel order


@pytest.mark.parametrize("bad", [0.5, float("nan"), 2.0, -1.0, 1e-30, 1 - 2**-24, float("inf")])
def test_non_binary_masks_are_refused(bad):
    # 1e-30 and 1 - 2**-24 (the float32 just below 1) are the values nearest 0 and 1.
    ok = torch.zeros(2, 1, 4, 4)
    for dtype in (torch.float32, torch.float64):
        x = ok.clone().to(dtype)
        x[1, 0, 2, 3] = bad
        with pytest.raises(InputError, match=r"pred must be binary"):
            segmentation_metrics(x, ok, [1.0, 1.0])
    assert segmentation_metrics(ok.to(torch.uint8), ok.long(), [1.0, 1.0])["dsc"].isnan().all()
    with pytest.raises(InputError, match=r"target must be binary"):
        segmentation_metrics(ok, torch.full((2, 1, 4, 4), 3, dtype=torch.uint8), [1.0, 1.0])


def test_legacy_matches_scipy_directed_hausdorff():
    gen = np.random.default_rng(2)
    pred = gen.random((5, 1, 12, 10)) > 0.5
    target = gen.random((5, 1, 12, 10)) > 0.5
    got = legacy_hausdorff(torch.from_numpy(pred), torch.from_numpy(target))
    m = segmentation_metrics(
        torch.from_numpy(pred), torch.from_numpy(target), [0.5, 0.5], hausdorff="legacy"
    )
    for i in range(5):
        ref = directed_hausdorff(pred[i, 0].astype(float), target[i, 0].astype(float))[0]
        assert got[i].item() == pytest.approx(ref, abs=1e-12)
        assert m["hsd"][i].item() == pytest.approx(ref, abs=1e-12)


def test_legacy_scores_a_row_shift_as_zero_boundary_does_not():
    target = torch.zeros(1, 1, 20, 20)
    target[0, 0, 3:8, 4:12] = 1
    pred = torch.roll(target, 5, dims=2)  # 5 pixels down
    legacy = segmentation_metrics(pred, target, [0.5, 0.5], hausdorff="legacy")
    assert legacy["hsd"].item() == 0.0
    assert directed_hausdorff(pred[0, 0].numpy(), target[0, 0].numpy())[0] == 0.0
    boundary = segmentation_metrics(pred, target, [0.5, 0.5])
    assert boundary["hsd"].item() == pytest.approx(2.5)
    assert legacy["hd95"].item() == boundary["hd95"].item()


def test_empty_policies():
    pred = torch.zeros(4, 1, 5, 6)
    target = torch.zeros(4, 1, 5, 6)
    pred[0, 0, 1, 1] = target[0, 0, 1, 1] = 1  # normal, identical
    pred[1, 0, 2, 2] = 1  # target empty
    target[2, 0, 2, 2] = 1  # pred empty
    # slice 3: both empty
    nan = segmentation_metrics(pred, target, [1.0, 2.0])
    assert nan["pred_empty"].tolist() == [False, False, True, True]
    assert nan["target_empty"].tolist() == [False, True, False, True]
    assert nan["dsc"][:3].tolist() == [100.0, 0.0, 0.0] and math.isnan(nan["dsc"][3])
    assert math.isnan(nan["tpr"][1]) and nan["tpr"][2] == 0.0 and math.isnan(nan["tpr"][3])
    assert nan["ppv"][1] == 0.0 and math.isnan(nan["ppv"][2]) and math.isnan(nan["ppv"][3])
    assert nan["tnr"].tolist() == [100.0, 100 * 29 / 30, 100.0, 100.0]
    assert (
        nan["hsd"][0] == 0.0
        and torch.isnan(nan["hsd"][1:]).all()
        and torch.isnan(nan["hd95"][1:]).all()
    )
    bounded = segmentation_metrics(pred, target, [1.0, 2.0], empty_policy="bounded")
    diagonal = math.hypot(4 * 1.0, 5 * 2.0)
    assert bounded["dsc"].tolist() == [100.0, 0.0, 0.0, 100.0]
    assert bounded["tpr"].tolist() == [100.0, 0.0, 0.0, 100.0]
    assert bounded["ppv"].tolist() == [100.0, 0.0, 0.0, 100.0]
    assert bounded["hsd"].tolist() == pytest.approx([0.0, diagonal, diagonal, 0.0])
    assert bounded["hd95"].tolist() == pytest.approx([0.0, diagonal, diagonal, 0.0])
    s = summarize(nan)
    assert (s["n"], s["both_empty"], s["pred_empty_only"], s["target_empty_only"]) == (4, 1, 1, 1)
    assert s["dsc_n"] == 3 and s["dsc_mean"] == pytest.approx(100 / 3)
    assert s["hsd_n"] == 1 and s["hsd_mean"] == 0.0


def test_summarize_against_numpy():
    gen = np.random.default_rng(3)
    values = gen.random(11) * 100
    values[[2, 7]] = np.nan
    per_slice = {"dsc": torch.from_numpy(values), "pred_empty": torch.zeros(11, dtype=torch.bool)}
    s = summarize(per_slice)
    assert s["dsc_mean"] == pytest.approx(np.nanmean(values))
    assert s["dsc_std"] == pytest.approx(np.nanstd(values))
    assert s["dsc_n"] == 9 and s["n"] == 11
    all_nan = summarize({"hsd": torch.full((3,), float("nan"))})
    assert math.isnan(all_nan["hsd_mean"]) and all_nan["hsd_n"] == 0


def test_volume_with_thickness_against_scipy_3d():
    gen = np.random.default_rng(4)
    pred = blobs(gen, (5, 14, 16), 0.55)
    target = blobs(gen, (5, 14, 16), 0.55)
    m = volume_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [0.6, 0.8], 2.5
    )
    hsd, hd95 = scipy_hsd_hd95(pred, target, (2.5, 0.6, 0.8))
    assert m["hsd"].item() == pytest.approx(hsd, abs=1e-9)
    assert m["hd95"].item() == pytest.approx(hd95, abs=1e-9)
    tp = np.sum(pred & target)
    assert m["dsc"].item() == pytest.approx(200 * tp / (pred.sum() + target.sum()))


def test_volume_unknown_thickness_matches_slices():
    gen = np.random.default_rng(5)
    pred = np.stack([blobs(gen, (14, 16)) for _ in range(4)])
    target = np.stack([blobs(gen, (14, 16)) for _ in range(4)])
    pred[2] = target[2] = False  # a slice where both are empty contributes nothing
    m = volume_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [0.5, 0.9], None
    )
    parts = [scipy_surface(pred[k], target[k], (0.5, 0.9)) for k in (0, 1, 3)]
    pooled = np.hstack([d for pair in parts for d in pair])
    assert m["hsd"].item() == pytest.approx(pooled.max(), abs=1e-9)
    assert m["hd95"].item() == pytest.approx(np.percentile(pooled, 95), abs=1e-9)
    pred[1] = False  # one empty mask in one slice: no finite in-slice distance
    m = volume_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [0.5, 0.9], None
    )
    assert math.isnan(m["hsd"]) and math.isnan(m["hd95"]) and not math.isnan(m["dsc"])


def test_per_volume_groups_against_scipy():
    gen = np.random.default_rng(6)
    pred = np.stack([blobs(gen, (12, 12)) for _ in range(5)])
    target = np.stack([blobs(gen, (12, 12)) for _ in range(5)])
    groups = torch.tensor([7, 3, 7, 3, 7])
    spacing = torch.tensor(
        [[0.5, 0.5], [1.0, 0.8], [0.5, 0.5], [1.0, 0.8], [0.5, 0.5]], dtype=torch.float64
    )
    m = per_volume_metrics(
        torch.from_numpy(pred)[:, None],
        torch.from_numpy(target)[:, None],
        spacing,
        groups,
        [2.0, 3.0],
    )
    assert m["group"].tolist() == [3, 7]
    for g, idx, thick, sp in [(0, [1, 3], 2.0, (1.0, 0.8)), (1, [0, 2, 4], 3.0, (0.5, 0.5))]:
        hsd, hd95 = scipy_hsd_hd95(pred[idx], target[idx], (thick, *sp))
        assert m["hsd"][g].item() == pytest.approx(hsd, abs=1e-9)
        assert m["hd95"][g].item() == pytest.approx(hd95, abs=1e-9)


@pytest.mark.data
@pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real test data not found at {DATA} (../shared/data)"
)
def test_real_gm_mask_shifted_against_scipy():
    nib = pytest.importorskip("nibabel")
    img = nib.load(DATA / "t2s_gmseg_manual.nii.gz")
    gm = np.asarray(img.dataobj) > 0.5  # (49, 54, 9), slices along the last axis
    sx, sy, sz = (float(v) for v in img.header.get_zooms()[:3])
    target = np.moveaxis(gm, -1, 0)  # (S, H, W)
    pred = np.roll(target, (1, -2), axis=(1, 2))
    pred[3] = ndimage.binary_dilation(pred[3])
    m = segmentation_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [sx, sy]
    )
    for k in range(target.shape[0]):
        hsd, hd95 = scipy_hsd_hd95(pred[k], target[k], (sx, sy))
        assert m["hsd"][k].item() == pytest.approx(hsd, abs=1e-9)
        assert m["hd95"][k].item() == pytest.approx(hd95, abs=1e-9)
    vol = volume_metrics(
        torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None], [sx, sy], sz
    )
    hsd, hd95 = scipy_hsd_hd95(pred, target, (sz, sx, sy))
    assert vol["hsd"].item() == pytest.approx(hsd, abs=1e-9)
    assert vol["hd95"].item() == pytest.approx(hd95, abs=1e-9)


def test_concat_metrics():
    a = segmentation_metrics(torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4), [1.0, 1.0])
    b = segmentation_metrics(torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4), [1.0, 1.0])
    c = concat_metrics([a, b])
    assert c["dsc"].tolist() == [100.0, 100.0, 0.0, 0.0, 0.0]
    assert c["pred_empty"].tolist() == [False, False, True, True, True]
    with pytest.raises(InputError, match=r"part 1 has keys"):
        concat_metrics([a, {"dsc": a["dsc"]}])
    with pytest.raises(InputError, match=r"got no parts"):
        concat_metrics([])


def test_bad_inputs_name_argument():
    ok = torch.zeros(2, 1, 4, 4)
    with pytest.raises(InputError, match=r"pred must be binary .*threshold"):
        segmentation_metrics(torch.full((2, 1, 4, 4), 0.3), ok, [1.0, 1.0])
    with pytest.raises(InputError, match=r"target must be binary"):
        segmentation_metrics(ok, torch.full((2, 1, 4, 4), 2.0), [1.0, 1.0])
    with pytest.raises(
        InputError, match=r"pred shape \(2, 1, 4, 4\) differs from target shape \(2, 1, 4, 5\)"
    ):
        segmentation_metrics(ok, torch.zeros(2, 1, 4, 5), [1.0, 1.0])
    with pytest.raises(InputError, match=r"pred must be a \(B, 1, H, W\) tensor, got \(4, 4\)"):
        segmentation_metrics(torch.zeros(4, 4), torch.zeros(4, 4), [1.0, 1.0])
    with pytest.raises(InputError, match=r"spacing must have shape \(2, 2\).*got \(3,\)"):
        segmentation_metrics(ok, ok, [1.0, 1.0, 1.0])
    with pytest.raises(InputError, match=r"spacing must be finite and > 0 mm"):
        segmentation_metrics(ok, ok, [1.0, -1.0])
    with pytest.raises(InputError, match=r"hausdorff must be 'boundary' or 'legacy', got 'scipy'"):
        segmentation_metrics(ok, ok, [1.0, 1.0], hausdorff="scipy")
    with pytest.raises(InputError, match=r"empty_policy must be 'nan' or 'bounded', got 'zero'"):
        segmentation_metrics(ok, ok, [1.0, 1.0], empty_policy="zero")
    with pytest.raises(InputError, match=r"slice_thickness must be > 0 mm or None, got -1"):
        volume_metrics(ok, ok, [1.0, 1.0], -1)
    with pytest.raises(InputError, match=r"groups must be a \(2,\) integer tensor"):
        per_volume_metrics(ok, ok, [1.0, 1.0], torch.tensor([0.0, 1.0]))
    with pytest.raises(InputError, match=r"slice_thickness has 1 values for 2 subjects"):
        per_volume_metrics(ok, ok, [1.0, 1.0], torch.tensor([0, 1]), [3.0])
    with pytest.raises(InputError, match=r"subject 0 has slices with different spacing"):
        per_volume_metrics(ok, ok, torch.tensor([[1.0, 1.0], [2.0, 1.0]]), torch.tensor([0, 0]))


def test_hd95_monai_is_the_larger_directed_percentile_against_scipy():
    gen = np.random.default_rng(40)
    spacing = (0.5, 0.8)
    for _ in range(6):
        pred, target = blobs(gen, (40, 48)), blobs(gen, (40, 48))
        m = segmentation_metrics(torch.from_numpy(pred)[None, None],
                                 torch.from_numpy(target)[None, None].float(), spacing)
        d_pt, d_tp = scipy_surface(pred, target, spacing)
        want = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))  # MONAI's convention
        assert m["hd95_monai"].item() == pytest.approx(want, rel=1e-6)
        assert m["hd95"].item() == pytest.approx(np.percentile(np.hstack([d_pt, d_tp]), 95),
                                                 rel=1e-6)


def test_an_empty_prediction_is_a_failure_scored_at_the_worst_value():
    from ada_core.scoring import score_slices

    h, w, spacing = 16, 20, (0.5, 0.25)
    target = torch.zeros(3, 1, h, w)
    target[0, 0, 4:9, 5:12] = 1  # grey matter, predicted empty: a failure
    target[2, 0, 2:5, 2:5] = 1  # grey matter, predicted partly
    pred = torch.zeros(3, 1, h, w, dtype=torch.bool)
    pred[1, 0, 3:6, 3:6] = True  # prediction where there is no grey matter: not a failure
    pred[2, 0, 2:4, 2:5] = True
    out = score_slices(pred, target, spacing)
    diagonal = math.hypot(0.5 * (h - 1), 0.25 * (w - 1))
    assert out["fail"].tolist() == [100.0, 0.0, 0.0]
    for key in ("hsd", "hd95", "hd95_monai"):
        assert out[key][0].item() == pytest.approx(diagonal)  # the worst possible distance
        assert math.isnan(out[key][1].item())  # no grey matter: undefined, as before
    assert out["ppv"][0].item() == 0.0 and out["dsc"][0].item() == 0.0
    plain = segmentation_metrics(pred, target, spacing)
    for key in ("hsd", "ppv", "dsc", "tpr"):  # slices that did not fail are left as they were
        assert out[key][2].item() == pytest.approx(plain[key][2].item())
    assert math.isnan(plain["hsd"][0].item())  # what the failure rule replaces
