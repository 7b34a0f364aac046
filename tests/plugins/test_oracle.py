"""The oracle attributor: its map against a hand-written loop, and the window it makes the mask
builder erase against the phantom's own cue (the pixels that differ between renderings with and
without it). The contract kit runs over it in test_contracts.py like over every attributor."""

from __future__ import annotations

import math

import pytest
import torch

from ada_core.data import PreprocessConfig, load_slices
from ada_core.masks import boxes_to_keep, window_boxes
from ada_scgm.oracle import OracleAttributor, OracleConfig
from ada_scgm.phantom import PhantomConfig, PhantomDataset


def test_registered_as_a_planted_control_not_a_method(registry):
    cls = registry.attributors.get("oracle")
    assert cls is OracleAttributor
    assert cls.planted and not cls.control and cls.erases


def test_map_matches_a_pixel_loop(model):
    masks = torch.zeros(2, 1, 12, 10)
    masks[0, 0, 6:9, 2:7] = 1
    masks[0, 0, 5, 3] = 1  # an odd shape: the centroid is not a pixel centre
    images = torch.randn(2, 1, 12, 10, generator=torch.Generator().manual_seed(0))
    cfg = OracleConfig(cue_offset_mm=(-1.5, 2.0), cue_radius_mm=0.75, spacing=0.5)
    oracle = OracleAttributor(cfg)
    out = oracle.attribute(model, images, masks)
    pixels = [(r, c) for r in range(12) for c in range(10) if masks[0, 0, r, c]]
    r0 = sum(r for r, _ in pixels) / len(pixels) - 3.0  # -1.5 mm / 0.5 mm
    c0 = sum(c for _, c in pixels) / len(pixels) + 4.0
    sigma = 1.5
    ref = torch.tensor([[math.exp(-((r - r0) ** 2 + (c - c0) ** 2) / (2 * sigma**2))
                         for c in range(10)] for r in range(12)])  # fmt: skip
    torch.testing.assert_close(out[0, 0], ref, rtol=1e-6, atol=1e-7)
    assert torch.equal(out[1], torch.zeros_like(out[1]))  # no ground truth, no anchor
    assert oracle.counters["no_ground_truth"] == 1
    assert torch.equal(oracle.attribute(model, images.neg(), masks), out)  # the model is ignored


def _cue_and_slices(offset: tuple[float, float], spacing: float, size: int):
    """Unseen cued slices and the cue's own pixels (the two renderings differ only there)."""
    params = dict(n_subjects=12, slices_per_subject=6, size=(128, 128), spacing=0.5, sites=3,
                  gm_contrast=0.25, gm_jitter_mm=1.5, gm_scale_jitter=0.25, seed=77,
                  cue_offset_mm=offset, cue_probability=1.0)  # fmt: skip
    pre = PreprocessConfig(spacing=spacing, size=(size, size), normalize="none", cache=False)
    cued = load_slices(PhantomDataset(PhantomConfig(context_cue=True, **params)), pre)
    no_cue = {k: v for k, v in params.items() if not k.startswith("cue_")}  # refused when off
    plain = load_slices(PhantomDataset(PhantomConfig(context_cue=False, **no_cue)), pre)
    assert torch.equal(cued.masks, plain.masks)
    return cued, (cued.images - plain.images) > 0.1


@pytest.mark.parametrize(
    ("offset", "spacing", "size", "window"),
    [((-7.0, 5.0), 0.5, 64, 8), ((-6.0, -4.0), 0.5, 64, 8), ((-7.0, 5.0), 0.4, 80, 10)],
)
def test_the_window_it_picks_erases_the_cue(model, offset, spacing, size, window):
    cued, cue = _cue_and_slices(offset, spacing, size)
    assert bool((cue.flatten(1).sum(1) >= 8).all())  # every slice shows a cue of some pixels
    cfg = OracleConfig(cue_offset_mm=offset, cue_radius_mm=1.0, spacing=spacing)
    saliency = OracleAttributor(cfg).attribute(model, cued.images, cued.masks)
    boxes = window_boxes(saliency, cued.masks, window)
    erased = boxes_to_keep(boxes, size, size, window, protect=cued.masks) == 0
    covered = (erased & cue).flatten(1).sum(1) / cue.flatten(1).sum(1)
    assert float(covered.mean()) >= 0.95 and float(covered.min()) >= 0.6, covered
    # Off by the offset (the phantom's default offset, mirrored), it erases next to nothing.
    wrong = OracleConfig(cue_offset_mm=(offset[0], -offset[1]), spacing=spacing)
    far = OracleAttributor(wrong).attribute(model, cued.images, cued.masks)
    erased = boxes_to_keep(window_boxes(far, cued.masks, window), size, size, window) == 0
    assert float(((erased & cue).flatten(1).sum(1) / cue.flatten(1).sum(1)).mean()) < 0.05
