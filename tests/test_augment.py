"""Tests of ada_core.augment against hand-derived cases, brute-force loops and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from ada_core.augment import (
    AugmentConfig,
    Augmenter,
    AugmentParams,
    apply_params,
    gaussian_blur,
    sample_params,
)
from ada_core.config import parse_config
from ada_core.errors import ConfigError, InputError


def _params(b, h, w, angle=0.0, shift=(0.0, 0.0), scale=1.0, intensity=0.0, disp=None):
    return AugmentParams(
        angle=torch.full((b,), float(angle)),
        shift=torch.tensor([shift] * b, dtype=torch.float32),
        scale=torch.full((b,), float(scale)),
        intensity=torch.full((b,), float(intensity)),
        displacement=disp,
    )


def _disk(h, w, r, cy=None, cx=None):
    cy = (h - 1) / 2 if cy is None else cy
    cx = (w - 1) / 2 if cx is None else cx
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).float()[None, None]


def test_identity_parameters_change_nothing():
    img = torch.randn(3, 1, 9, 7)
    msk = (torch.rand(3, 1, 9, 7) > 0.5).float()
    out_i, out_m = apply_params(img, msk, _params(3, 9, 7))
    torch.testing.assert_close(out_i, img, atol=1e-5, rtol=0)
    assert torch.equal(out_m, msk)


def test_rotation_by_90_degrees_matches_hand_derived_permutation():
    n = 6
    img = torch.arange(n * n, dtype=torch.float32).view(1, 1, n, n)
    out, _ = apply_params(img, torch.zeros_like(img), _params(1, n, n, angle=math.pi / 2))
    expected = torch.empty_like(img)
    for y in range(n):  # output (y, x) samples input (row n-1-x, column y)
        for x in range(n):
            expected[0, 0, y, x] = img[0, 0, n - 1 - x, y]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_integer_shift_moves_pixels_and_fills_zeros():
    img = torch.randn(1, 1, 8, 10)
    params = _params(1, 8, 10, shift=(2 / 10, -1 / 8))  # +2 columns, -1 row
    out, _ = apply_params(img, torch.zeros_like(img), params, padding="zeros")
    expected = torch.zeros_like(img)
    expected[..., 0:7, 2:] = img[..., 1:8, :8]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_intensity_shift_is_added():
    img = torch.randn(2, 1, 4, 4)
    params = _params(2, 4, 4)
    params.intensity = torch.tensor([0.1, -0.17])
    out, _ = apply_params(img, torch.zeros_like(img), params)
    torch.testing.assert_close(out, img + params.intensity.view(2, 1, 1, 1), atol=1e-5, rtol=0)


def test_general_warp_matches_scipy_map_coordinates():
    """Rotation + zoom + shift + elastic field against a per-pixel loop and scipy (order 1)."""
    h, w = 9, 11
    gen = torch.Generator().manual_seed(3)
    img = torch.randn(2, 1, h, w, generator=gen)
    disp = torch.randn(2, 2, h, w, generator=gen) * 0.7
    params = _params(2, h, w)
    params.angle = torch.tensor([0.3, -0.2])
    params.shift = torch.tensor([[0.05, -0.1], [-0.02, 0.04]])
    params.scale = torch.tensor([1.1, 0.9])
    params.displacement = disp
    mask = (torch.randn(2, 1, h, w, generator=gen) > 0).float()
    out, out_mask = apply_params(img, mask, params, padding="border")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for b in range(2):
        a, s = float(params.angle[b]), float(params.scale[b])
        tx, ty = float(params.shift[b, 0]) * w, float(params.shift[b, 1]) * h
        rows = np.zeros((h, w))
        cols = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                # the displaced point, un-shifted, un-rotated, un-zoomed
                px = x - cx + float(disp[b, 0, y, x]) - tx
                py = y - cy + float(disp[b, 1, y, x]) - ty
                cols[y, x] = (math.cos(a) * px + math.sin(a) * py) / s + cx
                rows[y, x] = (-math.sin(a) * px + math.cos(a) * py) / s + cy
        ref = ndimage.map_coordinates(
            img[b, 0].double().numpy(), [rows, cols], order=1, mode="nearest"
        )
        np.testing.assert_allclose(out[b, 0].numpy(), ref, atol=1e-4)
        # The mask: scipy's bilinear value thresholded at 0.5 (ties within 1e-4 may go either way).
        soft = ndimage.map_coordinates(
            mask[b, 0].double().numpy(), [rows, cols], order=1, mode="nearest"
        )
        decided = np.abs(soft - 0.5) > 1e-4
        np.testing.assert_array_equal(out_mask[b, 0].numpy()[decided], (soft >= 0.5)[decided])


def test_gaussian_blur_matches_scipy():
    x = torch.randn(2, 2, 20, 24, generator=torch.Generator().manual_seed(0))
    for sigma in (1.5, 4.0):
        ours = gaussian_blur(x, sigma).numpy()
        ref = ndimage.gaussian_filter(
            x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0
        )
        np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 6), (2, 3), (7, 9), (13, 4), (30, 26)])
def test_gaussian_blur_matches_scipy_when_the_kernel_is_wider_than_the_image(shape):
    # radius 12 at sigma 4: the mirror folds several times on images smaller than the kernel
    x = torch.randn(2, 2, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = gaussian_blur(x, 4.0).numpy()
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 4.0, 4.0), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_elastic_field_is_scipy_smoothed_noise_from_the_generator():
    """The displacement is alpha * scipy-blurred U(-1, 1) noise drawn after the other draws."""
    cfg = AugmentConfig(p_elastic=0.5, elastic_alpha=30.0, elastic_sigma=4.0)
    b, h, w = 6, 21, 34
    params = sample_params(cfg, b, (h, w), torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    for n in (b, b, 2 * b, b, b, b):  # affine on, angle, shift, scale, shift on, intensity
        torch.rand(n, generator=gen)
    elastic_on = torch.rand(b, generator=gen) < cfg.p_elastic
    noise = torch.rand(b, 2, h, w, generator=gen).double().numpy() * 2 - 1
    ref = ndimage.gaussian_filter(noise, (0, 0, 4.0, 4.0), mode="mirror", truncate=3.0) * 30.0
    ref *= elastic_on.numpy()[:, None, None, None]
    assert 0 < int(elastic_on.sum()) < b
    np.testing.assert_allclose(params.displacement.double().numpy(), ref, atol=1e-4)


def test_sampled_batch_matches_scipy_on_its_parameters():
    """The whole batched path (every transform on) against scipy on the replayed parameters."""
    cfg = AugmentConfig(rotation_deg=15, shift=0.1, scale=(0.9, 1.1), p_elastic=1.0)
    b, h, w = 4, 40, 48
    img = torch.randn(b, 1, h, w, generator=torch.Generator().manual_seed(4))
    mask = (img > 0.5).float()
    aug = Augmenter(cfg, torch.Generator().manual_seed(9), keep_params=True)
    out, _ = aug(img, mask)
    p = aug.last_params
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for k in range(b):
        a, s = float(p.angle[k]), float(p.scale[k])
        d = p.displacement[k].double().numpy()
        px = xx - cx + d[0] - float(p.shift[k, 0]) * w
        py = yy - cy + d[1] - float(p.shift[k, 1]) * h
        cols = (math.cos(a) * px + math.sin(a) * py) / s + cx
        rows = (-math.sin(a) * px + math.cos(a) * py) / s + cy
        ref = ndimage.map_coordinates(
            img[k, 0].double().numpy(), [rows, cols], order=1, mode="nearest"
        )
        np.testing.assert_allclose(out[k, 0].numpy(), ref + float(p.intensity[k]), atol=2e-4)


def test_ineligible_samples_come_back_bit_identical():
    cfg = AugmentConfig(p_elastic=1.0)
    img = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    mask = (img > 0).float()
    eligible = torch.tensor([True, False, True, False])
    out, out_mask = Augmenter(cfg, torch.Generator().manual_seed(0))(img, mask, eligible)
    assert torch.equal(out[~eligible], img[~eligible])
    assert torch.equal(out_mask[~eligible], mask[~eligible])
    assert not torch.equal(out[eligible], img[eligible])


def test_mask_follows_image_geometry_and_stays_binary():
    cfg = AugmentConfig(rotation_deg=20, shift=0.1, scale=(0.8, 1.2), p_elastic=1.0)
    mask = torch.cat([_disk(32, 32, 8), _disk(32, 32, 5, 10, 20)])
    gen = torch.Generator().manual_seed(1)
    params = sample_params(cfg, 2, (32, 32), gen)
    out_img, out_mask = apply_params(mask.clone(), mask, params)  # image = the mask itself
    assert set(out_mask.unique().tolist()) <= {0.0, 1.0}
    warped = out_img - params.intensity.view(2, 1, 1, 1)  # undo the intensity shift
    assert torch.equal(out_mask, (warped >= 0.5).float())


def test_mask_area_scales_with_zoom_without_boundary_drift():
    mask = _disk(64, 64, 12)
    for s in (0.9, 1.0, 1.1):
        _, out = apply_params(mask.clone(), mask, _params(1, 64, 64, scale=s, angle=0.05))
        # a disk of radius r*s: the boundary neither grows nor shrinks beyond one pixel ring
        area = out.sum().item()
        assert abs(area - math.pi * (12 * s) ** 2) < 2 * math.pi * 12 * s * 0.5


def test_sampled_ranges_and_probabilities():
    cfg = AugmentConfig(p_elastic=0.5, p_affine=1.0, p_channel_shift=0.0)
    gen = torch.Generator().manual_seed(0)
    p = sample_params(cfg, 4000, (8, 8), gen)
    assert p.angle.abs().max() <= math.radians(4.6) + 1e-6
    assert p.angle.abs().max() > math.radians(4.0)  # uses the range
    assert p.shift.abs().max() <= 0.03 + 1e-6
    assert 0.98 - 1e-6 <= p.scale.min() and p.scale.max() <= 1.02 + 1e-6
    assert torch.all(p.intensity == 0)
    deformed = p.displacement.flatten(1).abs().amax(1) > 0
    assert 0.45 < deformed.float().mean().item() < 0.55


def test_probability_zero_is_identity_and_eligible_mask_limits_samples():
    cfg = AugmentConfig(p_affine=0, p_channel_shift=0, p_elastic=0)
    img = torch.randn(3, 1, 8, 8)
    aug = Augmenter(cfg, torch.Generator().manual_seed(0))
    out, _ = aug(img, torch.zeros_like(img))
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)
    cfg = AugmentConfig(p_elastic=1.0)
    eligible = torch.tensor([True, False, True])
    p = sample_params(cfg, 3, (8, 8), torch.Generator().manual_seed(0), eligible=eligible)
    assert p.angle[1] == 0 and p.scale[1] == 1 and p.intensity[1] == 0
    assert torch.all(p.displacement[1] == 0) and p.angle[0] != 0


def test_seeded_and_replayable():
    cfg = AugmentConfig(p_elastic=1.0)
    img, msk = torch.randn(4, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.5).float()
    a = Augmenter(cfg, torch.Generator().manual_seed(7), keep_params=True)
    b = Augmenter(cfg, torch.Generator().manual_seed(7))
    out_a, out_b = a(img, msk), b(img, msk)
    assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
    replay = apply_params(img, msk, a.last_params)
    assert torch.equal(replay[0], out_a[0]) and torch.equal(replay[1], out_a[1])
    assert not torch.equal(Augmenter(cfg, torch.Generator().manual_seed(8))(img, msk)[0], out_a[0])


def test_disabled_returns_inputs():
    img = torch.randn(2, 1, 4, 4)
    out = Augmenter(AugmentConfig(enabled=False), torch.Generator())(img, img)
    assert out[0] is img


def test_bad_inputs_raise_clear_errors():
    img = torch.randn(2, 1, 8, 8)
    with pytest.raises(InputError, match="one shape"):
        apply_params(img, torch.zeros(2, 1, 8, 9), _params(2, 8, 8))
    with pytest.raises(InputError, match="parameters are for 3 samples, batch has 2"):
        apply_params(img, img, _params(3, 8, 8))
    with pytest.raises(InputError, match="elastic field"):
        apply_params(img, img, _params(2, 8, 8, disp=torch.zeros(2, 2, 4, 4)))
    with pytest.raises(ConfigError, match=r"augment.scale.*0 < low <= high"):
        parse_config({"augment": {"scale": [1.1, 0.9]}})
    with pytest.raises(ConfigError, match="augment.padding"):
        parse_config({"augment": {"padding": "wrap"}})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cfg = AugmentConfig(p_elastic=1.0)
    img, msk = torch.randn(4, 1, 32, 32), (torch.rand(4, 1, 32, 32) > 0.5).float()
    params = sample_params(cfg, 4, (32, 32), torch.Generator("cuda").manual_seed(0))
    gi, gm = apply_params(img.cuda(), msk.cuda(), params)
    ci, cm = apply_params(img, msk, params.to("cpu"))
    torch.testing.assert_close(gi.cpu(), ci, atol=1e-4, rtol=0)
    assert (gm.cpu() != cm).float().mean() < 0.01


def _previous_sample_params(cfg, b, size, gen):
    """The implementation before the elastic field was computed only where drawn: every
    sample's noise blurred, then multiplied by 0 or alpha (kept here as the reference)."""
    h, w = size
    draws = [torch.rand(n, generator=gen) for n in (b, b, 2 * b, b, b, b)]
    elastic_on = torch.rand(b, generator=gen) < cfg.p_elastic
    noise = torch.rand(b, 2, h, w, generator=gen).mul_(2).sub_(1)
    disp = gaussian_blur(noise, cfg.elastic_sigma)
    disp.mul_((elastic_on * cfg.elastic_alpha).view(-1, 1, 1, 1))
    return draws, disp


@pytest.mark.parametrize("p_elastic", [0.1, 0.5, 1.0])
def test_elastic_only_where_drawn_is_bit_identical_to_blurring_every_sample(p_elastic):
    cfg = AugmentConfig(p_elastic=p_elastic)
    images = torch.rand(16, 1, 40, 48, generator=torch.Generator().manual_seed(9))
    masks = (images > 0.5).float()
    for seed in range(6):
        params = sample_params(cfg, 16, (40, 48), torch.Generator().manual_seed(seed))
        _, ref = _previous_sample_params(cfg, 16, (40, 48), torch.Generator().manual_seed(seed))
        if params.displacement is None:  # no sample drew it: the old field was all zeros
            assert not ref.any()
            continue
        assert torch.equal(params.displacement, ref)
        # ...and the next draw of the stream is the same: the noise of every sample was drawn.
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        sample_params(cfg, 16, (40, 48), g1)
        _previous_sample_params(cfg, 16, (40, 48), g2)
        assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
        out = apply_params(images, masks, params)
        ref_params = AugmentParams(params.angle, params.shift, params.scale, params.intensity, ref)
        for a, r in zip(out, apply_params(images, masks, ref_params), strict=True):
            assert torch.equal(a, r)


def test_no_sample_drawing_elastic_gives_no_field_and_the_identity_displacement():
    cfg = AugmentConfig(p_elastic=1e-9)
    params = sample_params(cfg, 8, (16, 16), torch.Generator().manual_seed(0))
    assert params.displacement is None
