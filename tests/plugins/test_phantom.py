"""The procedural phantom: anatomy, determinism, sites, the context cue, the demo's no-op path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from ada_core.data import PreprocessConfig, load_slices, preprocess_volume
from ada_core.errors import ConfigError, DataError
from ada_core.plugins import load_plugins
from ada_core.testing import DatasetContract
from ada_scgm.phantom import PhantomConfig, generate


def build(registry, **params):
    return registry.datasets.build("phantom", params)


def test_200x200_slices_look_like_cord_mri(registry):
    image, gm, cord = generate(PhantomConfig(slices_per_subject=4), person=0)
    assert image.shape == gm.shape == cord.shape == (4, 200, 200)
    assert image.dtype == torch.float32 and gm.dtype == cord.dtype == torch.uint8
    assert bool(torch.isfinite(image).all()) and bool((image >= 0).all())
    assert bool((gm.flatten(1).sum(1) > 100).all())  # GM in every slice
    assert bool((gm <= cord).all())  # GM lies inside the cord
    wm = (cord == 1) & (gm == 0)
    ring = torch.from_numpy(ndimage.binary_dilation(cord.numpy(), iterations=3)) & (cord == 0)
    for z in range(4):
        g, w, csf = image[z][gm[z] == 1].mean(), image[z][wm[z]].mean(), image[z][ring[z]].mean()
        assert 1.05 < g / w < 1.45  # GM brighter than WM, as in T2*w
        assert csf > 1.4 * w  # bright CSF around the cord


def test_gm_is_butterfly_shaped_two_lobes_per_side():
    _, gm, cord = generate(PhantomConfig(slices_per_subject=1), person=1)
    g = gm[0].numpy().astype(bool)
    rows, cols = np.nonzero(cord[0].numpy())
    cr, cc = rows.mean(), cols.mean()
    quadrants = [g[:int(cr), :int(cc)], g[:int(cr), int(cc):], g[int(cr):, :int(cc)],
                 g[int(cr):, int(cc):]]  # fmt: skip
    assert all(q.sum() > 20 for q in quadrants)  # four horns
    assert g[int(cr) - 1 : int(cr) + 2, int(cc)].any()  # joined by the commissure


def test_same_seed_same_data_and_order_independent(registry):
    small = dict(n_subjects=3, slices_per_subject=3, size=[64, 64])
    a, b = build(registry, seed=5, **small), build(registry, seed=5, **small)
    subj = a.subjects()
    late = [b.load(s) for s in reversed(subj)][::-1]
    for s, vb in zip(subj, late):
        va = a.load(s)
        assert np.array_equal(va.image, vb.image) and np.array_equal(va.mask, vb.mask)
    other = build(registry, seed=6, **small).load(subj[0])
    assert not np.array_equal(other.image, a.load(subj[0]).image)


def test_any_size_and_anatomy_in_millimetres():
    small, g_small, _ = generate(PhantomConfig(size=(48, 64), spacing=0.5, slices_per_subject=2), 0)
    big, g_big, _ = generate(PhantomConfig(size=(96, 128), spacing=0.25, slices_per_subject=2), 0)
    assert small.shape == (2, 48, 64) and big.shape == (2, 96, 128)
    area_small = g_small.sum().item() * 0.25
    area_big = g_big.sum().item() * 0.0625
    assert abs(area_small - area_big) / area_big < 0.12  # same anatomy, other sampling


def test_subjects_sites_and_sessions(registry):
    ds = build(registry, n_subjects=4, sessions=2, sites=3, size=[96, 96], slices_per_subject=4)
    subj = ds.subjects()
    assert [s.id for s in subj][:3] == ["phantom-000-ses1", "phantom-000-ses2", "phantom-001-ses1"]
    assert [s.site for s in subj[::2]] == ["site0", "site1", "site2", "site0"]
    assert subj[0].group == subj[1].group == "phantom-000" and subj[2].group != subj[0].group
    v1, v2 = ds.load(subj[0]), ds.load(subj[1])
    assert not np.array_equal(v1.image, v2.image)  # a new scan of the same person
    assert abs(int(v1.mask.sum()) - int(v2.mask.sum())) < 0.1 * v1.mask.sum()


def test_sites_differ_in_contrast_and_noise():
    cfg = PhantomConfig(slices_per_subject=3, sites=3, size=(96, 96), spacing=0.25)
    ratios, noise = [], []
    for p in range(3):
        image, gm, cord = generate(cfg, person=p)
        wm = (cord == 1) & (gm == 0)
        ratios.append(float(image[gm == 1].mean() / image[wm].mean()))
        noise.append(float(image[:, :3, :].std()))
    assert max(ratios) - min(ratios) > 0.02
    assert max(noise) / min(noise) > 1.2


def _cue_difference(cfg: PhantomConfig, person: int = 0):
    with_cue, gm, cord = generate(cfg.model_copy(update={"context_cue": True}), person)
    without, _, _ = generate(cfg.model_copy(update={"context_cue": False}), person)
    return (with_cue - without).abs(), gm, cord


def test_context_cue_is_a_small_disc_at_the_configured_offset():
    cfg = PhantomConfig(slices_per_subject=3, size=(128, 128), spacing=0.25, context_cue=True,
                        cue_offset_mm=(-7, 5))
    diff, gm, cord = _cue_difference(cfg)
    for z in range(3):
        blob = diff[z].numpy() > 0.05
        area = blob.sum() * 0.0625
        assert 0.5 * math.pi < area < 2.0 * math.pi  # radius 1 mm, blurred edge
        br, bc = ndimage.center_of_mass(blob)
        cr, cc = ndimage.center_of_mass(cord[z].numpy())
        offset = ((br - cr) * 0.25, (bc - cc) * 0.25)
        # the offset turns with the cord (at most ~0.2 rad): within 2 mm of (-7, 5)
        assert math.dist(offset, (-7, 5)) < 2.0
        assert not blob[gm[z].numpy() == 1].any()


def test_context_cue_probability_and_missing_sites():
    cfg = PhantomConfig(slices_per_subject=40, size=(64, 64), sites=2, context_cue=True,
                        cue_probability=0.5)
    diff, _, _ = _cue_difference(cfg, person=0)
    shown = int((diff.flatten(1).amax(1) > 0.05).sum())
    assert 10 < shown < 30
    missing = cfg.model_copy(
        update={"cue_missing_sites": (1,), "slices_per_subject": 4, "cue_probability": 1.0}
    )
    assert _cue_difference(missing, person=1)[0].max() == 0  # site 1: never
    assert _cue_difference(missing, person=0)[0].max() > 0


def test_demo_path_is_an_exact_no_op_resample_and_a_plain_crop(registry):
    ds = build(registry, n_subjects=1, slices_per_subject=3, size=(80, 80), spacing=0.5)
    vol = ds.load(ds.subjects()[0])
    image, gm, cord = generate(ds.config, 0)
    out = preprocess_volume(vol, PreprocessConfig(spacing=0.5, size=(64, 64), normalize="none"))
    assert out.images.shape == (3, 1, 64, 64)
    for z in range(3):
        r, c = ndimage.center_of_mass(cord[z].numpy())
        r0, c0 = math.floor(r + 0.5) - 32, math.floor(c + 0.5) - 32
        assert 0 <= r0 and r0 + 64 <= 80 and 0 <= c0 and c0 + 64 <= 80
        assert torch.equal(out.images[z, 0], image[z, r0 : r0 + 64, c0 : c0 + 64])
        assert torch.equal(out.masks[z, 0], gm[z, r0 : r0 + 64, c0 : c0 + 64].float())
    assert torch.allclose(out.spacing, torch.tensor(0.5))


def test_load_slices_with_defaults_gives_200x200_with_gm(registry):
    slices = load_slices(build(registry, n_subjects=2, slices_per_subject=2), PreprocessConfig())
    assert slices.images.shape == (4, 1, 200, 200)
    assert bool((slices.masks.flatten(1).amax(1) == 1).all())


def test_bad_settings_and_unknown_subject(registry):
    with pytest.raises(DataError, match=r"cue_missing_sites \[3\] are not sites 0..1"):
        build(registry, sites=2, context_cue=True, cue_missing_sites=[3])
    with pytest.raises(ConfigError, match="size"):
        build(registry, size=[4, 4])
    ds = build(registry, n_subjects=2)
    from ada_core.interfaces import Subject

    with pytest.raises(DataError, match="no subject 'phantom-007'"):
        ds.load(Subject("phantom-007"))


def test_fingerprint_follows_the_config(registry):
    assert build(registry, seed=1).fingerprint() != build(registry, seed=2).fingerprint()


class TestPhantomContract(DatasetContract):
    @pytest.fixture
    def dataset(self):
        return load_plugins().datasets.build(
            "phantom", {"n_subjects": 2, "slices_per_subject": 3, "size": [64, 64]}
        )


# --- GM jitter and the cue anchored to the GM -----------------------------------------------

def _centre_mm(mask: np.ndarray, spacing: float) -> np.ndarray:
    return np.array(ndimage.center_of_mass(mask)) * spacing


_JITTER = dict(slices_per_subject=12, size=(128, 128), spacing=0.25, context_cue=True,
               cue_offset_mm=(-7.0, 5.0), seed=4)  # fmt: skip


def test_gm_jitter_moves_the_gm_inside_the_cord_and_changes_nothing_else():
    still_cfg = PhantomConfig(**_JITTER)
    moved_cfg = PhantomConfig(**_JITTER, gm_jitter_mm=1.5, cue_anchor="cord")
    still, gm0, cord0 = generate(still_cfg, person=0)
    moved, gm1, cord1 = generate(moved_cfg, person=0)
    assert torch.equal(cord0, cord1)  # same cord, same scan
    assert bool((gm1 <= cord1).all())  # the GM stays inside the cord
    near = ndimage.binary_dilation((gm0 | gm1).numpy(), np.ones((1, 17, 17)))  # 2 mm: blur
    far = torch.from_numpy(~near)
    assert torch.equal(still[far], moved[far])  # only the GM moved (the cue: cord anchor)
    assert not torch.equal(still, moved)
    shifts = []
    for z in range(12):
        g0, g1 = gm0[z].numpy(), gm1[z].numpy()
        shifts.append(np.linalg.norm(_centre_mm(g1, 0.25) - _centre_mm(g0, 0.25)))
        assert 0.8 < g1.sum() / g0.sum() < 1.1  # clipped by the cord at most a little
    shifts = np.array(shifts)
    assert shifts.max() < 1.5 * math.sqrt(2) + 0.3  # at most the configured jitter per axis
    assert np.median(shifts) > 0.4 and np.ptp(shifts) > 0.5  # per slice, not one fixed shift


def test_gm_scale_jitter_shrinks_the_butterfly():
    gm_full = generate(PhantomConfig(**_JITTER), person=1)[1].flatten(1).sum(1).float()
    gm_small = generate(PhantomConfig(**_JITTER, gm_scale_jitter=0.4), person=1)[1]
    ratio = gm_small.flatten(1).sum(1).float() / gm_full
    assert bool((ratio <= 1.02).all()) and bool((ratio > 0.6**2 * 0.8).all())  # area ~ scale^2
    assert float(ratio.min()) < 0.8 and float(ratio.std()) > 0.03  # drawn per slice


def _cue_centres(cfg: PhantomConfig, person: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice, in mm: the cue's centre (from the image difference), the GM and cord centroids."""
    diff, gm, cord = _cue_difference(cfg, person)
    cue = np.stack([_centre_mm(d.numpy() > 0.05, cfg.spacing) for d in diff])
    gmc = np.stack([_centre_mm(g.numpy(), cfg.spacing) for g in gm])
    cordc = np.stack([_centre_mm(c.numpy(), cfg.spacing) for c in cord])
    return cue, gmc, cordc


def test_cue_follows_the_jittered_gm():
    """The cue keeps its offset from the GM centroid (scipy), not from the cord, under jitter."""
    for person in (0, 1):
        cue0, gm0, _ = _cue_centres(PhantomConfig(**_JITTER), person)
        cue, gm, cord = _cue_centres(PhantomConfig(**_JITTER, gm_jitter_mm=1.5), person)
        from_gm, from_gm_still = cue - gm, cue0 - gm0
        # the butterfly is not symmetric, so its centroid is not its middle: compare with the
        # same slice without jitter (the cord turns by at most ~0.2 rad: offsets within ~1.5 mm)
        assert np.abs(from_gm - from_gm_still).max() < 0.35
        assert np.abs(from_gm - np.array([-7.0, 5.0])).max() < 1.5
        from_cord = cue - cord  # while the offset from the cord varies with the jitter
        assert np.ptp(from_cord, axis=0).max() > 1.0


def test_cue_anchored_to_the_cord_ignores_the_gm_jitter():
    cue0, _, cord0 = _cue_centres(PhantomConfig(**_JITTER), 0)
    cue, gm, cord = _cue_centres(PhantomConfig(**_JITTER, gm_jitter_mm=1.5, cue_anchor="cord"), 0)
    assert np.abs((cue - cord) - (cue0 - cord0)).max() < 0.05
    assert np.ptp(cue - gm, axis=0).max() > 1.0  # now the cue says nothing about where the GM is


def test_jitter_is_deterministic_and_validated(registry):
    cfg = PhantomConfig(**_JITTER, gm_jitter_mm=1.0, gm_scale_jitter=0.2)
    a, b = generate(cfg, 2), generate(cfg, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ConfigError, match="gm_jitter_mm"):
        build(registry, gm_jitter_mm=5.0)
    with pytest.raises(ConfigError, match="gm_scale_jitter"):
        build(registry, gm_scale_jitter=1.0)
    with pytest.raises(ConfigError, match="cue_anchor"):
        build(registry, cue_anchor="csf")
