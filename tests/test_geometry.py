"""The slice geometry and its inverse, against brute force, scipy and the real preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from ada_core._geometry import SliceGeometry, from_display, plan_geometry, to_crops, to_volume
from ada_core._slicing import display
from ada_core.data import PreprocessConfig, preprocess_volume
from ada_core.errors import InputError
from ada_core.interfaces import Subject, Volume
from conftest import SHARED_DATA

nib = pytest.importorskip("nibabel")


def _triangle_resize(x: np.ndarray, out: int) -> np.ndarray:
    """Brute-force 1-D antialiased linear resize along axis 0 (PIL's triangle filter, half-pixel
    centres, edge weights renormalised), the reference for torch's antialias=True."""
    n = x.shape[0]
    scale = n / out
    support = max(scale, 1.0)
    res = np.zeros((out, *x.shape[1:]))
    for i in range(out):
        centre = (i + 0.5) * scale
        weights = np.array([max(0.0, 1 - abs((j + 0.5) - centre) / support) for j in range(n)])
        res[i] = np.tensordot(weights / weights.sum(), x, axes=(0, 0))
    return res


def _geometry(shape, out_hw, starts, size) -> SliceGeometry:
    return SliceGeometry(shape, out_hw, torch.tensor(starts, dtype=torch.long), size, (1.0, 1.0))


def test_from_display_inverts_display_index_by_index():
    rng = np.random.default_rng(0)
    arr = rng.random((5, 7, 3))  # (X, Y, Z)
    shown = display(arr).numpy()
    for x in range(5):
        for y in range(7):
            for z in range(3):
                assert shown[z, 7 - 1 - y, x] == arr[x, y, z]  # rows = Y reversed, columns = X
    np.testing.assert_array_equal(from_display(shown), arr)


def test_uncrop_places_each_crop_like_a_pixel_loop():
    rng = np.random.default_rng(1)
    crops = torch.tensor(rng.random((3, 4, 5)), dtype=torch.float32)
    # inside, hanging over the top-left and over the bottom-right corner of a 6 x 8 slice
    g = _geometry((8, 6, 3), (6, 8), [[1, 2], [-2, -3], [4, 6]], (4, 5))
    canvas = display(to_volume(crops, g)).numpy()  # back to (Z, H, W) to compare with the loop
    want = np.zeros((3, 6, 8))
    for z, (r0, c0) in enumerate([[1, 2], [-2, -3], [4, 6]]):
        for r in range(6):
            for c in range(8):
                if 0 <= r - r0 < 4 and 0 <= c - c0 < 5:
                    want[z, r, c] = crops[z, r - r0, c - c0]
    np.testing.assert_allclose(canvas, want, rtol=0, atol=1e-7)


def test_shrinking_back_matches_a_brute_force_triangle_filter():
    rng = np.random.default_rng(2)
    crops = torch.tensor(rng.random((2, 12, 10)), dtype=torch.float32)
    g = _geometry((4, 5, 2), (12, 10), [[0, 0], [0, 0]], (12, 10))  # 12 x 10 -> 5 x 4
    got = display(to_volume(crops, g)).numpy()
    want = np.stack([_triangle_resize(_triangle_resize(c.numpy(), 5).T, 4).T for c in crops])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_enlarging_back_matches_scipy_linear_interpolation():
    rng = np.random.default_rng(3)
    crops = torch.tensor(rng.random((2, 4, 6)), dtype=torch.float32)
    g = _geometry((15, 10, 2), (4, 6), [[0, 0], [0, 0]], (4, 6))  # 4 x 6 -> 10 x 15
    got = display(to_volume(crops, g)).numpy()
    rows = (np.arange(10) + 0.5) * 4 / 10 - 0.5  # half-pixel centres
    cols = (np.arange(15) + 0.5) * 6 / 15 - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    want = np.stack([ndimage.map_coordinates(c.numpy().astype(np.float64), [rr, cc], order=1,
                                             mode="nearest") for c in crops])  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_bad_shapes_are_input_errors():
    with pytest.raises(InputError, match="3 positive sizes"):
        plan_geometry((4, 4), (1, 1, 1), PreprocessConfig())
    with pytest.raises(InputError, match="3 positive numbers"):
        plan_geometry((4, 4, 4), (1, 0, 1), PreprocessConfig())
    g = plan_geometry((8, 8, 2), (1, 1, 1), PreprocessConfig(spacing=1, size=(8, 8)))
    with pytest.raises(InputError, match="the geometry expects"):
        to_volume(torch.zeros(2, 4, 4), g)


def _sct():
    folder = SHARED_DATA / "sct-testing-t2s"
    if not folder.is_dir():
        pytest.skip(f"real MRI test data not found at {SHARED_DATA} (see README: Testing)")
    load = lambda n: nib.as_closest_canonical(nib.load(folder / n))  # noqa: E731
    image = load("t2s.nii.gz")
    data = lambda im: np.asarray(im.dataobj, dtype=np.float64)  # noqa: E731
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return data(image), data(load("t2s_gmseg_manual.nii.gz")), data(load("t2s_seg.nii.gz")), spacing


@pytest.mark.parametrize("config", [PreprocessConfig(), PreprocessConfig(spacing=0.5, size=(32, 32)),
                                    PreprocessConfig(spacing=0.7, size=(24, 40), normalize="minmax")])
def test_forward_is_exactly_what_training_preprocessing_does(config):
    image, gm, cord, spacing = _sct()
    config = config.model_copy(update={"drop_empty": False})
    volume = Volume(Subject("s"), image.astype(np.float32), gm.astype(np.uint8), spacing,
                    cord=cord.astype(np.uint8))  # fmt: skip
    want = preprocess_volume(volume, config).images[:, 0]
    g = plan_geometry(image.shape, spacing, config, [cord, gm])  # the cord first, as data.py
    torch.testing.assert_close(to_crops(image, g, config.normalize), want, rtol=0, atol=0)


@pytest.mark.parametrize("spacing,size", [(0.25, (200, 200)), (0.5, (64, 64)), (0.4, (48, 40))])
def test_a_mask_cut_and_put_back_is_the_mask_again(spacing, size):
    """The GM mask through the forward geometry and back lands on its own voxels."""
    image, gm, cord, zooms = _sct()
    config = PreprocessConfig(spacing=spacing, size=size, normalize="none")
    g = plan_geometry(image.shape, zooms, config, [cord])
    back = to_volume(to_crops(gm, g, "none"), g) >= 0.5
    truth = gm > 0.5
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert back.shape == gm.shape and dice >= 0.97, dice
