"""The window mask builder and the erased-region IoU against brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ada_core.errors import ConfigError, InputError
from ada_core.masks import erased_iou_matrix, window_boxes, window_keep_mask
from ada_core.plugins import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


def brute_force_keep(
    sal: np.ndarray, gt: np.ndarray, z: int, stride: int, regions: int, policy: str
):
    """One image (H, W): a plain loop over every window; exact ties go to the first row-major."""
    h, w = sal.shape
    score_map = sal if policy == "ignore" else sal * (1 - gt)
    chosen: list[tuple[int, int]] = []
    for _ in range(regions):
        best, best_rc = None, None
        for r in range(0, h - z + 1, stride):
            for c in range(0, w - z + 1, stride):
                n_gt = gt[r : r + z, c : c + z].sum()
                if policy == "restore" and n_gt == z * z:
                    continue
                if policy == "avoid" and n_gt > 0:
                    continue
                if any(abs(r - r2) < z and abs(c - c2) < z for r2, c2 in chosen):
                    continue
                s = float(np.sum(score_map[r : r + z, c : c + z], dtype=np.float64))
                if best is None or s > best:
                    best, best_rc = s, (r, c)
        if best_rc is None:
            break
        chosen.append(best_rc)
    keep = np.ones((h, w), dtype=np.float32)
    for r, c in chosen:
        keep[r : r + z, c : c + z] = 0
    if policy == "restore":
        keep[gt == 1] = 1
    return keep, chosen


def random_case(gen: torch.Generator, b: int, h: int, w: int, kind: str):
    if kind == "float":
        sal = torch.rand(b, 1, h, w, generator=gen)
    elif kind == "sparse":  # many exact zero-score windows: ties everywhere
        sal = torch.rand(b, 1, h, w, generator=gen) * (torch.rand(b, 1, h, w, generator=gen) < 0.05)
    else:  # small integers: many exact ties among non-zero scores
        sal = torch.randint(0, 3, (b, 1, h, w), generator=gen).float()
    gt = torch.zeros(b, 1, h, w)
    for i in range(b):  # random rectangles of ground truth, one image with none
        if i == 0:
            continue
        r0, c0 = torch.randint(0, h - 2, (2,), generator=gen).tolist()
        gt[i, 0, r0 : r0 + int(torch.randint(1, h, (1,), generator=gen)), c0 : c0 + 5] = 1
    return sal, gt


@pytest.mark.parametrize("policy", ["restore", "avoid", "ignore"])
@pytest.mark.parametrize("kind", ["float", "sparse", "int"])
def test_window_matches_brute_force(policy, kind):
    gen = torch.Generator().manual_seed(
        ["restore", "avoid", "ignore"].index(policy) * 10 + len(kind)
    )
    for (h, w), z, stride, regions in [
        ((11, 14), 4, 1, 1),
        ((12, 9), 3, 2, 2),
        ((10, 13), 5, 3, 3),
    ]:
        sal, gt = random_case(gen, 4, h, w, kind)
        keep = window_keep_mask(sal, gt, z, stride, regions, policy)
        boxes = window_boxes(sal, gt, z, stride, regions, policy)
        for i in range(sal.shape[0]):
            ref, chosen = brute_force_keep(
                sal[i, 0].double().numpy(), gt[i, 0].numpy(), z, stride, regions, policy
            )
            np.testing.assert_array_equal(
                keep[i, 0].numpy(), ref, err_msg=f"{policy} {kind} {h}x{w} z={z} image {i}"
            )
            got = [tuple(rc) for rc in boxes[i].tolist() if rc[0] >= 0]
            assert got == chosen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_callers_saliency_and_ground_truth_are_left_unchanged(dtype):
    # the scores are zeroed inside the ground truth in place: on a copy, even when the
    # saliency already has the score dtype (float64) and .to() would return it as it is
    sal, gt = random_case(torch.Generator().manual_seed(5), 4, 12, 11, "float")
    sal = sal.to(dtype) - 0.5
    before_sal, before_gt = sal.clone(), gt.clone()
    window_keep_mask(sal, gt, 4, 1, 2, "restore")
    window_boxes(sal, gt, 4, 1, 2, "avoid")
    assert torch.equal(sal, before_sal) and torch.equal(gt, before_gt)


@pytest.mark.parametrize("block", [1, 3])  # images per CPU block: one; 3 (7 images: 3+3+1)
@pytest.mark.parametrize("policy", ["restore", "avoid"])
def test_images_scored_in_blocks_match_brute_force(monkeypatch, block, policy):
    import ada_core.masks as masks

    h, w = 12, 11
    monkeypatch.setattr(masks, "_CPU_BLOCK_PIXELS", block * h * w)
    sal, gt = random_case(torch.Generator().manual_seed(block), 7, h, w, "int")
    gt[3] = 1  # no allowed window, in the middle of a block
    keep = window_keep_mask(sal, gt, 4, 1, 2, policy)
    boxes = window_boxes(sal, gt, 4, 1, 2, policy)
    for i in range(7):
        ref, chosen = brute_force_keep(sal[i, 0].double().numpy(), gt[i, 0].numpy(), 4, 1, 2,
                                       policy)  # fmt: skip
        np.testing.assert_array_equal(keep[i, 0].numpy(), ref, err_msg=f"image {i}")
        assert [tuple(rc) for rc in boxes[i].tolist() if rc[0] >= 0] == chosen


def test_ties_go_to_first_window_row_major(registry):
    builder = registry.masks.build("window", {"size": 3})
    for dtype in (torch.float32, torch.float64):
        # Every window ties. In float64, 0.1 summed through an integral image differs between
        # windows by ~1e-12: the tie tolerance must absorb that.
        sal = torch.full((1, 1, 60, 60), 0.1, dtype=dtype)
        keep = builder.build(sal, torch.zeros(1, 1, 60, 60))
        expected = torch.ones(60, 60)
        expected[0:3, 0:3] = 0
        assert torch.equal(keep[0, 0], expected), dtype
    sal = torch.zeros(1, 1, 8, 8)
    sal[0, 0, 6, 1] = sal[0, 0, 2, 6] = 1.0  # two equal peaks: the one in the earlier row wins
    keep = builder.build(sal, torch.zeros(1, 1, 8, 8))
    assert keep[0, 0, 0, 4] == 0 and keep[0, 0, 2, 6] == 0 and keep[0, 0, 6, 1] == 1


def tolerant_first_window(sal: np.ndarray, z: int, rtol: float = 1e-10) -> tuple[int, int]:
    """One image, policy 'ignore', stride 1: exact window sums (math.fsum); the first window in
    row-major order whose score is within ``rtol * sum(|saliency|)`` of the best."""
    h, w = sal.shape
    scores = {
        (r, c): math.fsum(sal[r : r + z, c : c + z].ravel().tolist())
        for r in range(h - z + 1)
        for c in range(w - z + 1)
    }
    tol = rtol * math.fsum(np.abs(sal).ravel().tolist())
    best = max(scores.values())
    return next(rc for rc in sorted(scores) if scores[rc] >= best - tol)


def test_signed_saliency_summing_to_zero_ties_by_the_documented_rule():
    """A +-1e6 checkerboard sums to zero but not in absolute value: the two peaks (window sums
    1 and 1 + 1e-6) are tied within 1e-10 * sum(|s|) = 6.4e-3, so the earlier window wins. A
    tolerance relative to the signed total (~0) would let the 1e-6 pick the later one."""
    sal = np.fromfunction(lambda r, c: np.where((r + c) % 2 == 0, 1e6, -1e6), (8, 8))
    sal[0, 0] += 1.0  # window (0, 0) scores 1
    sal[7, 7] += 1.0 + 1e-6  # window (6, 6) scores 1 + 1e-6
    sal[0, 7] -= 1.0  # balance the total back to ~0; these corners only lower their windows
    sal[7, 0] -= 1.0 + 1e-6
    assert abs(math.fsum(sal.ravel().tolist())) < 1e-9
    assert tolerant_first_window(sal, 2) == (0, 0)
    t = torch.from_numpy(sal)[None, None]
    for dtype in (torch.float64, torch.float32):
        boxes = window_boxes(t.to(dtype), torch.zeros_like(t), 2, gt_policy="ignore")
        assert boxes[0, 0].tolist() == [0, 0], dtype


@pytest.mark.parametrize("seed", range(4))
def test_zero_mean_signed_saliency_matches_tolerant_brute_force(seed):
    """Random signed saliency with its mean removed (sum ~0) and small-integer plateaus (exact
    ties): the builder agrees with the tolerant brute-force reference."""
    gen = np.random.default_rng(seed)
    sal = gen.integers(-2, 3, (3, 9, 11)).astype(np.float64) * 1e3 + gen.normal(0, 1e-9, (3, 9, 11))
    sal -= sal.mean((1, 2), keepdims=True)
    boxes = window_boxes(torch.from_numpy(sal)[:, None], torch.zeros(3, 1, 9, 11), 3,
                         gt_policy="ignore")  # fmt: skip
    for i in range(3):
        assert tuple(boxes[i, 0].tolist()) == tolerant_first_window(sal[i], 3), i


def test_restore_keeps_ground_truth_and_erases_the_rest(registry):
    builder = registry.masks.build("window", {"size": 4, "gt_policy": "restore"})
    sal = torch.zeros(1, 1, 10, 10)
    sal[0, 0, 3:7, 3:7] = 1.0
    gt = torch.zeros(1, 1, 10, 10)
    gt[0, 0, 4:6, 4:6] = 1
    keep = builder.build(sal, gt)
    expected = torch.ones(10, 10)
    expected[3:7, 3:7] = 0
    expected[4:6, 4:6] = 1
    assert torch.equal(keep[0, 0], expected)


def test_no_allowed_window_keeps_image_and_counts(registry):
    builder = registry.masks.build("window", {"size": 3, "gt_policy": "restore"})
    sal = torch.rand(3, 1, 6, 6)
    gt = torch.zeros(3, 1, 6, 6)
    gt[0] = 1  # ground truth everywhere: no window has a pixel to erase
    gt[2] = 1
    keep = builder.build(sal, gt)
    assert torch.equal(keep[0], torch.ones(1, 6, 6)) and torch.equal(keep[2], torch.ones(1, 6, 6))
    assert (keep[1] == 0).sum() == 9
    assert builder.counters["no_window"] == 2
    avoid = registry.masks.build("window", {"size": 3, "gt_policy": "avoid"})
    gt = torch.zeros(2, 1, 6, 6)
    gt[0, 0, 2:4, 2:4] = 1  # every 3x3 window (rows/cols 0..3) touches rows or cols 2:4
    keep = avoid.build(torch.rand(2, 1, 6, 6), gt)
    assert torch.equal(keep[0], torch.ones(1, 6, 6))
    assert avoid.counters["no_window"] == 1


def test_fewer_regions_counter_and_window_equal_to_image(registry):
    builder = registry.masks.build("window", {"size": 4, "regions": 3})
    keep = builder.build(torch.rand(2, 1, 4, 9), torch.zeros(2, 1, 4, 9))
    # Only two non-overlapping 4x4 windows fit into 4x9 in the greedy order at most.
    assert builder.counters["fewer_regions"] == 2
    assert builder.counters["no_window"] == 0
    whole = registry.masks.build("window", {"size": 5})
    keep = whole.build(torch.rand(1, 1, 5, 5), torch.zeros(1, 1, 5, 5))
    assert keep.sum() == 0


def test_output_contract_and_fill(registry):
    builder = registry.masks.build("window", {"size": 3, "fill": -2.5})
    sal = torch.rand(3, 1, 7, 8, dtype=torch.float64)
    gt = (torch.rand(3, 1, 7, 8) > 0.8).double()
    keep = builder.build(sal, gt)
    assert keep.dtype == torch.float32 and keep.shape == (3, 1, 7, 8)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    images = torch.rand(3, 1, 7, 8)
    out = builder.apply(images, keep)
    assert torch.equal(out[keep == 0], torch.full_like(out[keep == 0], -2.5))
    assert torch.equal(out[keep == 1], images[keep == 1])
    # batch independence: each image alone gives the same mask
    for i in range(3):
        assert torch.equal(builder.build(sal[i : i + 1], gt[i : i + 1]), keep[i : i + 1])


def test_bad_inputs_name_argument(registry):
    builder = registry.masks.build("window", {"size": 20})
    with pytest.raises(InputError, match=r"size=20 is larger than the image \(10x30\).*at most 10"):
        builder.build(torch.rand(1, 1, 10, 30), torch.zeros(1, 1, 10, 30))
    with pytest.raises(InputError, match=r"Z=20 is larger than the image"):
        window_keep_mask(torch.rand(1, 1, 10, 30), torch.zeros(1, 1, 10, 30), 20)
    with pytest.raises(
        InputError, match=r"saliency shape \(1, 1, 8, 8\) differs from ground_truth"
    ):
        builder.build(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(InputError, match=r"saliency shape .* differs from ground_truth"):
        window_keep_mask(torch.rand(1, 1, 8, 8), torch.zeros(2, 1, 8, 8), 3)
    with pytest.raises(InputError, match=r"ground_truth must be binary"):
        builder.build(torch.rand(1, 1, 30, 30), torch.full((1, 1, 30, 30), 0.5))
    with pytest.raises(InputError, match=r"ground_truth must be binary"):
        window_keep_mask(torch.rand(1, 1, 8, 8), torch.full((1, 1, 8, 8), 2.0), 3)
    nan = torch.rand(1, 1, 30, 30)
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match=r"saliency contains NaN"):
        builder.build(nan, torch.zeros(1, 1, 30, 30))
    with pytest.raises(InputError, match=r"saliency contains NaN"):
        window_keep_mask(nan, torch.zeros(1, 1, 30, 30), 3)
    with pytest.raises(InputError, match=r"saliency must be a \(B, 1, H, W\) tensor, got \(8, 8\)"):
        window_keep_mask(torch.rand(8, 8), torch.zeros(8, 8), 3)
    with pytest.raises(InputError, match=r"gt_policy must be one of"):
        window_keep_mask(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 3, gt_policy="keep")
    with pytest.raises(InputError, match=r"stride must be an integer >= 1, got 0"):
        window_keep_mask(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 3, stride=0)


def test_bad_config_names_field(registry):
    with pytest.raises(ConfigError, match=r"gt_policy"):
        registry.masks.build("window", {"gt_policy": "keep"})
    with pytest.raises(ConfigError, match=r"params\.size"):
        registry.masks.build("window", {"size": 0})
    with pytest.raises(ConfigError, match=r"Did you mean 'stride'"):
        registry.masks.build("window", {"strid": 2})


def brute_force_iou(keeps: dict[str, torch.Tensor]) -> np.ndarray:
    names = list(keeps)
    m = np.zeros((len(names), len(names)))
    n = keeps[names[0]].shape[0]
    for (i, a), (j, b) in itertools.product(enumerate(names), repeat=2):
        vals = []
        for k in range(n):
            ea = {tuple(p) for p in np.argwhere(keeps[a][k, 0].numpy() == 0)}
            eb = {tuple(p) for p in np.argwhere(keeps[b][k, 0].numpy() == 0)}
            vals.append(1.0 if not ea | eb else len(ea & eb) / len(ea | eb))
        m[i, j] = np.mean(vals)
    return m


def test_erased_iou_matrix_matches_sets():
    gen = torch.Generator().manual_seed(3)
    sal = {name: torch.rand(5, 1, 9, 9, generator=gen) for name in ("a", "b", "c")}
    gt = torch.zeros(5, 1, 9, 9)
    gt[4] = 1  # every method erases nothing on image 4: counts as IoU 1
    keeps = {name: window_keep_mask(s, gt, 4) for name, s in sal.items()}
    keeps["d"] = torch.ones(5, 1, 9, 9)  # erases nothing anywhere: IoU 0 except image 4
    names, iou = erased_iou_matrix(keeps)
    assert names == ["a", "b", "c", "d"]
    np.testing.assert_allclose(iou.numpy(), brute_force_iou(keeps), rtol=0, atol=1e-12)
    _, chunked = erased_iou_matrix(keeps, chunk=2)  # 5 images in chunks of 2, 2 and 1
    np.testing.assert_allclose(chunked.numpy(), brute_force_iou(keeps), rtol=0, atol=1e-12)
    assert torch.allclose(iou.diagonal(), torch.ones(4, dtype=iou.dtype))
    assert iou[0, 3] == pytest.approx(0.2)


def test_erased_iou_matrix_bad_input():
    with pytest.raises(InputError, match=r"non-empty dict"):
        erased_iou_matrix({})
    with pytest.raises(
        InputError, match=r"keeps\['b'\] has shape \(2, 1, 4, 4\) but keeps\['a'\] has"
    ):
        erased_iou_matrix({"a": torch.ones(3, 1, 4, 4), "b": torch.ones(2, 1, 4, 4)})
    with pytest.raises(InputError, match=r"cover no images \(N = 0\)"):
        erased_iou_matrix({"a": torch.ones(0, 1, 4, 4)})
    with pytest.raises(InputError, match=r"chunk must be an integer >= 1, got 0"):
        erased_iou_matrix({"a": torch.ones(2, 1, 4, 4)}, chunk=0)
    with pytest.raises(InputError, match=r"keeps\['a'\] must be binary"):
        erased_iou_matrix({"a": torch.full((3, 1, 4, 4), 0.5)})
