"""ada_core.data: preprocessing against brute-force references, the cache, the error policy.

The splits themselves are tested in test_splits.py; here only that they cut loaded slices."""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import numpy as np
import pytest
import torch
from pydantic import Field
from scipy import ndimage

from ada_core.data import (
    DataWarning,
    PreprocessConfig,
    SliceSet,
    load_slices,
    preprocess_volume,
)
from ada_core.errors import DataError
from ada_core.interfaces import ComponentConfig, SegDataset, Subject, Volume
from ada_core.splits import SplitConfig, split_slices, split_subjects

SUBJ = Subject("s1", "siteA", "p1")


def vol(image, mask=None, cord=None, spacing=(1.0, 1.0, 3.0), subject=SUBJ) -> Volume:
    return Volume(subject, np.asarray(image, np.float32), mask, spacing, cord=cord, source="test.nii")


def cfg(**kw) -> PreprocessConfig:
    kw.setdefault("spacing", 1.0)
    kw.setdefault("normalize", "none")
    kw.setdefault("drop_empty", False)
    return PreprocessConfig(**kw)


def display(volume: np.ndarray, z: int) -> np.ndarray:
    """Reference display orientation: numpy's rot90 of the (X, Y) slice (anterior up)."""
    return np.rot90(volume[:, :, z])


def crop_ref(img2d: np.ndarray, centre: tuple[float, float], size: tuple[int, int], fill: float):
    """Brute-force crop: the pixel nearest ``centre`` lands at (size // 2); outside -> fill."""
    out = np.full(size, fill, np.float64)
    r0 = math.floor(centre[0] + 0.5) - size[0] // 2
    c0 = math.floor(centre[1] + 0.5) - size[1] // 2
    for i in range(size[0]):
        for j in range(size[1]):
            r, c = r0 + i, c0 + j
            if 0 <= r < img2d.shape[0] and 0 <= c < img2d.shape[1]:
                out[i, j] = img2d[r, c]
    return out


# --------------------------------------------------------------------------- orientation, crop


def test_display_orientation_puts_anterior_up_and_left_on_the_left():
    image = np.zeros((5, 4, 2), np.float32)
    image[1, 3, 0] = 1.0  # x = 1 (left side), y = 3 (most anterior)
    out = preprocess_volume(vol(image), cfg(size=(4, 5)))
    assert out.images.shape == (2, 1, 4, 5)
    assert out.images[0, 0, 0, 1] == 1.0 and out.images.sum() == 1.0


def test_crop_follows_gm_centroid_with_padding_against_brute_force():
    rng = np.random.default_rng(0)
    image = rng.uniform(1, 2, (30, 20, 4)).astype(np.float32)
    mask = np.zeros((30, 20, 4), np.uint8)
    mask[2:5, 1:4, 0] = 1  # near a corner: the crop needs padding
    mask[20:29, 10:18, 1] = 1
    mask[14, 7, 2] = 1  # slice 3 has no GM: it takes the volume's GM centroid
    size = (16, 12)
    out = preprocess_volume(vol(image, mask), cfg(size=size))
    vol_centre = ndimage.center_of_mass(np.stack([display(mask, z) for z in range(4)]))[1:]
    for z in range(4):
        m2 = display(mask, z)
        centre = ndimage.center_of_mass(m2) if m2.any() else vol_centre
        img2 = display(image, z)
        ref = crop_ref(img2, centre, size, img2.min())
        np.testing.assert_allclose(out.images[z, 0].numpy(), ref, rtol=1e-6)
        np.testing.assert_array_equal(out.masks[z, 0].numpy(), crop_ref(m2, centre, size, 0))


def test_crop_prefers_the_cord_over_the_gm():
    image = np.arange(40 * 40 * 1, dtype=np.float32).reshape(40, 40, 1)
    mask = np.zeros((40, 40, 1), np.uint8)
    cord = np.zeros((40, 40, 1), np.uint8)
    mask[5:8, 5:8] = 1
    cord[25:31, 20:30] = 1
    out = preprocess_volume(vol(image, mask, cord), cfg(size=(10, 10)))
    centre = ndimage.center_of_mass(display(cord, 0))
    ref = crop_ref(display(image, 0), centre, (10, 10), image.min())
    np.testing.assert_array_equal(out.images[0, 0].numpy(), ref)


def test_unlabelled_volume_is_cropped_at_the_image_centre_and_keeps_every_slice():
    image = np.random.default_rng(1).normal(size=(9, 7, 3)).astype(np.float32)
    out = preprocess_volume(vol(image), cfg(size=(4, 4), drop_empty=True))
    assert len(out) == 3 and out.masks.sum() == 0
    ref = crop_ref(display(image, 1), (3.0, 4.0), (4, 4), 0)  # display is 7 x 9
    np.testing.assert_allclose(out.images[1, 0].numpy(), ref)


# --------------------------------------------------------------------------- resampling


def bilinear_ref(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Loop bilinear interpolation at pixel centres (half-pixel convention, edges clamped)."""
    h, w = img.shape
    out = np.zeros(out_hw)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            r = min(max((i + 0.5) * h / out_hw[0] - 0.5, 0), h - 1)
            c = min(max((j + 0.5) * w / out_hw[1] - 0.5, 0), w - 1)
            r0, c0 = int(r), int(c)
            r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
            fr, fc = r - r0, c - c0
            out[i, j] = ((1 - fr) * (1 - fc) * img[r0, c0] + (1 - fr) * fc * img[r0, c1]
                         + fr * (1 - fc) * img[r1, c0] + fr * fc * img[r1, c1])  # fmt: skip
    return out


def test_upsampling_matches_a_loop_bilinear_reference_and_records_the_spacing():
    image = np.random.default_rng(2).uniform(size=(6, 8, 1)).astype(np.float32)
    # display is 8 x 6 at 0.6 (rows, from y) x 0.5 (cols, from x) mm -> 0.25 mm
    out = preprocess_volume(vol(image, spacing=(0.5, 0.6, 3)), cfg(spacing=0.25, size=(19, 12)))
    ref = bilinear_ref(display(image, 0), (19, 12))
    np.testing.assert_allclose(out.images[0, 0].numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(out.spacing[0].numpy(), [0.6 * 8 / 19, 0.5 * 6 / 12], rtol=1e-6)


def test_upsampled_crop_equals_resize_then_crop_with_padding():
    rng = np.random.default_rng(5)
    image = rng.uniform(size=(12, 10, 2)).astype(np.float32)
    mask = np.zeros((12, 10, 2), np.uint8)
    mask[1:4, 6:9, 0] = 1  # near a corner: padding
    mask[5:8, 2:6, 1] = 1
    out = preprocess_volume(vol(image, mask, spacing=(0.5, 0.5, 1)), cfg(spacing=0.2, size=(16, 16)))
    for z in range(2):
        img2, m2 = display(image, z), display(mask, z).astype(float)
        full = bilinear_ref(img2, (25, 30))
        full_mask = (bilinear_ref(m2, (25, 30)) >= 0.5).astype(float)
        # the centre: the label centroid in the source slice, mapped to the resized grid
        r, c = ndimage.center_of_mass(m2)
        centre = ((r + 0.5) * 2.5 - 0.5, (c + 0.5) * 2.5 - 0.5)
        ref = crop_ref(full, centre, (16, 16), img2.min())
        np.testing.assert_allclose(out.images[z, 0].numpy(), ref, atol=1e-5)
        np.testing.assert_array_equal(out.masks[z, 0].numpy(), crop_ref(full_mask, centre, (16, 16), 0))


@pytest.mark.parametrize("target", [0.25, 1.0])  # up- and (antialiased) down-sampling
def test_resampling_keeps_a_linear_ramp_in_millimetres(target):
    x_mm = (np.arange(40) + 0.5) * 0.5
    y_mm = (np.arange(32) + 0.5) * 0.5
    image = (2 * x_mm[:, None] + 3 * y_mm[None, :])[..., None].astype(np.float32)  # (X, Y, 1)
    out = preprocess_volume(vol(image, spacing=(0.5, 0.5, 3)), cfg(spacing=target, size=(8, 8)))
    n_r, n_c = round(32 * 0.5 / target), round(40 * 0.5 / target)
    full = preprocess_volume(vol(image, spacing=(0.5, 0.5, 3)), cfg(spacing=target, size=(n_r, n_c)))
    got = full.images[0, 0].numpy()
    rows_mm = (np.arange(n_r) + 0.5) * target  # pixel centres; rows run from y max down
    cols_mm = (np.arange(n_c) + 0.5) * target
    expect = 2 * cols_mm[None, :] + 3 * (16 - rows_mm)[:, None]
    inner = (slice(3, -3), slice(3, -3))  # away from the clamped border
    np.testing.assert_allclose(got[inner], expect[inner], atol=1e-3)
    assert out.images.shape[-2:] == (8, 8)


def test_mask_resampling_stays_binary_and_keeps_area_and_centre():
    yy, xx = np.mgrid[0:30, 0:30]
    disc = ((xx - 14.2) ** 2 + (yy - 15.7) ** 2 <= 6**2).astype(np.uint8)[..., None]
    out = preprocess_volume(
        vol(np.ones((30, 30, 1)), disc, spacing=(0.5, 0.5, 3)), cfg(spacing=0.2, size=(80, 80))
    )
    m = out.masks[0, 0].numpy()
    assert set(np.unique(m)) == {0.0, 1.0}
    area = m.sum() * 0.2 * 0.2
    assert abs(area - math.pi * 3.0**2) / (math.pi * 9) < 0.03
    assert abs(area - disc.sum() * 0.25) / area < 0.05


def test_equal_spacing_is_an_exact_no_op():
    image = np.random.default_rng(3).normal(size=(12, 10, 2)).astype(np.float32)
    out = preprocess_volume(vol(image, spacing=(0.5 + 1e-8, 0.5, 2)), cfg(spacing=0.5, size=(10, 12)))
    np.testing.assert_array_equal(out.images[1, 0].numpy(), display(image, 1))
    np.testing.assert_allclose(out.spacing.numpy(), 0.5, rtol=1e-6)


# --------------------------------------------------------------------------- normalisation


def test_zscore_and_minmax_are_per_slice_over_the_crop():
    rng = np.random.default_rng(4)
    image = (rng.normal(size=(10, 10, 3)) * [1, 5, 20] + [0, 3, -7]).astype(np.float32)
    z = preprocess_volume(vol(image), cfg(size=(6, 6), normalize="zscore")).images.numpy()
    m = preprocess_volume(vol(image), cfg(size=(6, 6), normalize="minmax")).images.numpy()
    for k in range(3):
        crop = crop_ref(display(image, k), (4.5, 4.5), (6, 6), 0)
        np.testing.assert_allclose(z[k, 0], (crop - crop.mean()) / crop.std(), atol=1e-5)
        np.testing.assert_allclose(m[k, 0], (crop - crop.min()) / np.ptp(crop), atol=1e-6)


def test_constant_slice_normalises_to_zeros_not_nan():
    out = preprocess_volume(vol(np.full((4, 4, 1), 7.0)), cfg(size=(4, 4), normalize="zscore"))
    assert torch.equal(out.images, torch.zeros(1, 1, 4, 4))


# --------------------------------------------------------------------------- slices and provenance


def test_drop_empty_keeps_gm_slices_with_their_index_and_provenance():
    mask = np.zeros((8, 8, 5), np.uint8)
    mask[3:5, 3:5, [1, 3]] = 1
    subj = Subject("s7", "siteB", "p7", "2")
    out = preprocess_volume(vol(np.ones((8, 8, 5)), mask, subject=subj), cfg(size=(8, 8), drop_empty=True))
    assert out.slice_index.tolist() == [1, 3]
    assert out.subject == ["s7", "s7"] and out.site == ["siteB"] * 2 and out.group == ["p7"] * 2
    assert out.images.dtype == torch.float32 and out.masks.dtype == torch.float32
    assert out.spacing.shape == (2, 2)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image=np.full((4, 4, 2), np.nan)), "NaN or infinite"),
        (dict(image=np.zeros((4, 4))), "3-D"),
        (dict(mask=np.zeros((4, 5, 2), np.uint8)), "mask shape"),
        (dict(mask=np.full((4, 4, 2), 2, np.uint8)), "binary"),
        (dict(cord=np.full((4, 4, 2), 0.5)), "cord must be binary"),
        (dict(spacing=(1.0, -1.0, 1.0)), "spacing"),
    ],
)
def test_malformed_volume_names_its_source(change, message):
    kw = dict(image=np.zeros((4, 4, 2)), mask=None, cord=None, spacing=(1.0, 1.0, 1.0))
    kw.update(change)
    with pytest.raises(DataError, match=message) as err:
        preprocess_volume(vol(**kw), cfg(size=(4, 4)))
    assert "test.nii" in str(err.value)


def test_sliceset_concat_rejects_mixed_sizes_and_empty_input():
    a = preprocess_volume(vol(np.ones((4, 4, 1))), cfg(size=(4, 4)))
    b = preprocess_volume(vol(np.ones((4, 4, 1))), cfg(size=(2, 2)))
    with pytest.raises(DataError, match="different image sizes"):
        SliceSet.concat([a, b])
    with pytest.raises(DataError, match="nothing to concatenate"):
        SliceSet.concat([])


# --------------------------------------------------------------------------- load_slices


class _ToyConfig(ComponentConfig):
    n: int = Field(3, description="Subjects.")
    bad: tuple[str, ...] = Field((), description="Subjects whose load fails.")
    unlabelled: int = Field(0, description="Extra unlabelled subjects.")
    empty: tuple[str, ...] = Field((), description="Subjects without grey matter.")


class _Toy(SegDataset):
    name: ClassVar[str] = "toy"
    Config = _ToyConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.loads = 0
        self.version = 0

    def subjects(self):
        out = [Subject(f"t{i}", f"site{i % 2}", f"p{i}") for i in range(self.config.n)]
        return out + [Subject(f"u{i}", "x", labelled=False) for i in range(self.config.unlabelled)]

    def load(self, subject):
        self.loads += 1
        if subject.id in self.config.bad:
            raise DataError(f"/data/{subject.id}.nii.gz: truncated file")
        i = int(subject.id[1:])
        mask = np.zeros((6, 6, 2), np.uint8)
        if subject.id not in self.config.empty:
            mask[2:4, 2:4, :] = 1
        return Volume(subject, np.full((6, 6, 2), i, np.float32), mask, (1.0, 1.0, 1.0))

    def fingerprint(self):
        return f"toy:{self.config.model_dump_json()}:{self.version}"


def test_load_slices_concatenates_subjects():
    out = load_slices(_Toy(), cfg(size=(4, 4)))
    assert out.subject == ["t0", "t0", "t1", "t1", "t2", "t2"]
    assert out.images[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]


def test_cache_is_reused_and_invalidated_by_files_and_settings(tmp_path):
    ds = _Toy()
    first = load_slices(ds, cfg(size=(4, 4)), tmp_path)
    assert ds.loads == 3 and len(list(tmp_path.glob("toy-*.pt"))) == 1
    again = load_slices(ds, cfg(size=(4, 4)), tmp_path)
    assert ds.loads == 3  # from the cache
    for name in ("images", "masks", "spacing", "slice_index"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert again.subject == first.subject and again.group == first.group
    ds.version = 1  # a changed file changes the fingerprint
    load_slices(ds, cfg(size=(4, 4)), tmp_path)
    assert ds.loads == 6
    load_slices(ds, cfg(size=(2, 2)), tmp_path)  # a changed setting
    assert ds.loads == 9
    load_slices(ds, cfg(size=(2, 2), on_error="skip"), tmp_path)  # not a slice setting
    assert ds.loads == 9
    load_slices(ds, cfg(size=(2, 2), cache=False), tmp_path)
    assert ds.loads == 12


def test_corrupt_cache_is_rebuilt(tmp_path):
    ds = _Toy()
    load_slices(ds, cfg(size=(4, 4)), tmp_path)
    (path,) = tmp_path.glob("toy-*.pt")
    path.write_bytes(b"not a torch file")
    out = load_slices(ds, cfg(size=(4, 4)), tmp_path)
    assert len(out) == 6 and ds.loads == 6


def test_bad_subject_raises_naming_subject_and_file():
    with pytest.raises(DataError, match=r"subject 't1'.*/data/t1\.nii\.gz: truncated"):
        load_slices(_Toy(_ToyConfig(bad=("t1",))), cfg(size=(4, 4)))


def test_skip_policy_reports_every_skipped_subject_and_keeps_the_others(tmp_path):
    ds = _Toy(_ToyConfig(n=4, bad=("t1",), empty=("t3",)))
    with pytest.warns(DataWarning) as rec:
        out = load_slices(ds, cfg(size=(4, 4), drop_empty=True, on_error="skip"), tmp_path)
    text = " ".join(str(w.message) for w in rec)
    assert "'t1'" in text and "truncated" in text and "'t3'" in text and "the GM label is all zero" in text
    assert sorted(set(out.subject)) == ["t0", "t2"]
    assert any("t1" in n for n in out.notes) and any("t3" in n for n in out.notes)
    assert not list(tmp_path.glob("*.pt"))  # a run that skipped subjects is not cached


def test_all_subjects_failing_is_an_error():
    ds = _Toy(_ToyConfig(n=2, bad=("t0", "t1")))
    with pytest.warns(DataWarning), pytest.raises(DataError, match="every subject failed"):
        load_slices(ds, cfg(size=(4, 4), on_error="skip"))


def test_empty_and_unlabelled_datasets():
    with pytest.raises(DataError, match="no labelled subjects"):
        load_slices(_Toy(_ToyConfig(n=0)), cfg(size=(4, 4)))
    with pytest.warns(DataWarning, match="2 unlabelled subjects not used: u0, u1"):
        out = load_slices(_Toy(_ToyConfig(n=1, unlabelled=2)), cfg(size=(4, 4)))
    assert set(out.subject) == {"t0"}


# --------------------------------------------------------------------------- splits


def test_split_slices_matches_split_subjects():
    ds = _Toy(_ToyConfig(n=10))
    slices = load_slices(ds, cfg(size=(4, 4)))
    config = SplitConfig(val_fraction=0.3, seed=1)
    train, val = split_slices(slices, config)
    s_train, s_val = split_subjects([s for s in ds.subjects() if s.labelled], config)
    assert set(val.subject) == {s.id for s in s_val} and set(train.subject) == {s.id for s in s_train}
    assert len(train) + len(val) == len(slices)
    idx = [i for i, s in enumerate(slices.subject) if s in set(val.subject)]
    assert torch.equal(val.images, slices.images[idx])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty_val = split_slices(slices, SplitConfig(val_fraction=0))[1]
    assert len(empty_val) == 0 and empty_val.images.shape[1:] == (1, 4, 4)
