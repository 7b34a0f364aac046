"""Sliding-window inference (ada_core._sliding) against brute-force and scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from ada_core._geometry import plan_geometry
from ada_core._sliding import gaussian_map, locate, sliding_window, tile_starts
from ada_core.data import PreprocessConfig


def test_the_gaussian_is_nnunets():
    """nnU-Net's compute_gaussian: a delta at the tile centre blurred with sigma = size / 8
    (scipy), scaled to a maximum of 1, zeros replaced by the smallest value."""
    for size in ((32, 32), (20, 28), (7, 9)):
        delta = np.zeros(size)
        delta[tuple(s // 2 for s in size)] = 1
        ref = ndimage.gaussian_filter(delta, [s / 8 for s in size], mode="constant", cval=0)
        ref /= ref.max()
        got = gaussian_map(size).numpy()
        if all(s % 2 for s in size):  # odd sizes: the same centre pixel as nnU-Net's
            np.testing.assert_allclose(got, np.maximum(ref, ref[ref > 0].min()), atol=0.02)
        assert got.max() == pytest.approx(1) and got.min() > 0
        np.testing.assert_allclose(got, got[::-1, ::-1], atol=1e-6)  # symmetric about the centre


@pytest.mark.parametrize(
    "length, tile, overlap, expected",
    [(768, 200, 0.5, [0, 95, 189, 284, 379, 473, 568]),  # ceil(568 / 100) + 1 = 7 tiles
     (200, 200, 0.5, [0]), (150, 200, 0.5, [-25]), (151, 200, 0.5, [-24]),
     (300, 100, 0.0, [0, 100, 200]), (301, 100, 0.0, [0, 67, 134, 201])],
)  # fmt: skip
def test_tile_starts_hand_computed(length, tile, overlap, expected):
    got = tile_starts(length, tile, overlap)
    assert got == expected
    if length >= tile:
        covered = np.zeros(length, bool)
        for s in got:
            covered[s : s + tile] = True
        assert covered.all()


def _brute_force(image_dhw: np.ndarray, tile: tuple[int, int], overlap: float, values) -> np.ndarray:
    """Gaussian-weighted mean of per-tile constants, pixel by pixel, in display slices."""
    z, h, w = image_dhw.shape
    g = gaussian_map(tile).numpy().astype(np.float64)
    out = np.zeros((z, h, w))
    rows, cols = tile_starts(h, tile[0], overlap), tile_starts(w, tile[1], overlap)
    for k in range(z):
        acc, wsum = np.zeros((h, w)), np.zeros((h, w))
        t = 0
        for r in rows:
            for c in cols:
                for i in range(tile[0]):
                    for j in range(tile[1]):
                        if 0 <= r + i < h and 0 <= c + j < w:
                            acc[r + i, c + j] += g[i, j] * values(k, t)
                            wsum[r + i, c + j] += g[i, j]
                t += 1
        out[k] = acc / wsum
    return out


def test_tiles_are_blended_with_gaussian_weights_as_a_pixel_loop_does():
    """Each tile 'predicts' a constant of its own (its index): the blend must be the
    Gaussian-weighted mean over the tiles covering each pixel (brute force)."""
    shape = (23, 19, 2)  # canonical (X, Y, Z): display slices are (2, 19, 23)
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    config = PreprocessConfig(spacing=1.0, size=(8, 10), normalize="none")
    geometry = plan_geometry(shape, (1.0, 1.0, 1.0), config)  # same spacing: no resampling
    n_tiles = len(tile_starts(19, 8, 0.5)) * len(tile_starts(23, 10, 0.5))
    seen = [0]  # tiles so far: tiles come slice by slice, each slice's in row-major order

    def predict(x: torch.Tensor) -> torch.Tensor:
        ids = torch.arange(seen[0], seen[0] + x.shape[0]) % n_tiles
        seen[0] += x.shape[0]
        return (ids.float() / n_tiles)[:, None, None].expand(x.shape[0], *x.shape[2:])

    got = sliding_window(predict, image, geometry, "none", batch_size=5)
    ref = _brute_force(np.zeros((2, 19, 23)), (8, 10), 0.5, lambda k, t: t / n_tiles)
    from ada_core._geometry import from_display

    np.testing.assert_allclose(got, from_display(ref), atol=1e-5)


def test_an_identity_model_gives_back_the_image_through_resampling():
    """Tiles that 'predict' their own pixels blend back to the image, also when the slices are
    resampled to another spacing and back (a slice smaller than a tile is padded)."""
    shape = (30, 26, 3)
    yy, xx = np.meshgrid(np.linspace(0, 1, shape[1]), np.linspace(0, 1, shape[0]))
    image = np.repeat((0.2 + 0.6 * xx * yy)[..., None], 3, axis=2).astype(np.float32)
    for spacing, size in ((1.0, (12, 12)), (0.5, (16, 20)), (1.0, (40, 40))):
        config = PreprocessConfig(spacing=spacing, size=size, normalize="none")
        geometry = plan_geometry(shape, (1.0, 1.0, 2.0), config)
        got = sliding_window(lambda x: x[:, 0], image, geometry, "none")
        np.testing.assert_allclose(got, image, atol=0.02 if spacing != 1.0 else 1e-5)


def test_locate_keeps_the_largest_connected_region():
    prob = np.zeros((20, 20, 5), np.float32)
    prob[2:5, 2:5, :] = 0.9  # 45 voxels
    prob[10:18, 10:18, 1:4] = 0.8  # 192 voxels: the largest
    prob[0, 19, 0] = 0.7
    found = locate(prob, grow=0)
    largest = prob == np.float32(0.8)
    np.testing.assert_array_equal(found, largest.astype(np.float32))
    grown = locate(prob, grow=2)  # within 2 steps along the axes (scipy's default structure)
    dist = ndimage.distance_transform_cdt(~largest, metric="taxicab")
    np.testing.assert_array_equal(grown, (dist <= 2).astype(np.float32))
    assert locate(np.full((4, 4, 4), 0.4, np.float32)) is None
