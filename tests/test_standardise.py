"""Intensity standardisation (data.preprocess.standardise) against numpy references: the
region z-score, Nyúl–Udupa histogram standardisation (np.percentile + np.interp), landmarks
learned on training persons only, the config rules, and predict's region matching training's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ada_core._standardise import map_to_scale
from ada_core.data import PreprocessConfig, SliceSet, preprocess_volume
from ada_core.engine.data import standardise_fold
from ada_core.interfaces import Subject, Volume

LANDMARKS = (1.0, 25.0, 50.0, 75.0, 99.0)


def scan(seed: int, person: str, gain: float = 1.0, offset: float = 0.0, shape=(40, 36, 5)):
    """A volume with a cord disc (bright GM inside) at a per-seed position; intensities
    ``gain * x + offset`` as another scanner would give them."""
    rng = np.random.default_rng(seed)
    x, y, z = shape
    xx, yy = np.meshgrid(np.arange(x), np.arange(y), indexing="ij")
    cx, cy = 14 + seed % 5, 15 + seed % 4
    cord = ((xx - cx) ** 2 + (yy - cy) ** 2 <= 25).astype(np.float32)[..., None].repeat(z, 2)
    gm = ((xx - cx) ** 2 + (yy - cy) ** 2 <= 6).astype(np.float32)[..., None].repeat(z, 2)
    img = rng.gamma(2.0, 10.0, size=shape) + 60 * cord + 30 * gm
    img = (gain * img + offset).astype(np.float32)
    return Volume(Subject(person, "site" + person, person), img, gm, (1.0, 1.0, 3.0), cord=cord,
                  source=f"{person}.nii")  # fmt: skip


def cfg(**kw) -> PreprocessConfig:
    return PreprocessConfig(spacing=1.0, size=(16, 16), drop_empty=False, **kw)


def raw_crops(volume: Volume) -> np.ndarray:
    """The volume's crops without any normalisation (the region of both methods), float64."""
    return preprocess_volume(volume, cfg(normalize="none")).images[:, 0].double().numpy()


def ref_map(x: np.ndarray, own: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """np.interp inside the landmarks, the end segments' lines outside."""
    out = np.interp(x, own, scale)
    lo, hi = x < own[0], x > own[-1]
    s0 = (scale[1] - scale[0]) / (own[1] - own[0])
    s1 = (scale[-1] - scale[-2]) / (own[-1] - own[-2])
    out[lo] = scale[0] + s0 * (x[lo] - own[0])
    out[hi] = scale[-1] + s1 * (x[hi] - own[-1])
    return out


def test_zscore_cord_is_numpys_zscore_over_the_cord_centred_crops():
    v = scan(0, "a", gain=3.0, offset=500.0)
    got = preprocess_volume(v, cfg(standardise="zscore_cord")).images[:, 0].double().numpy()
    region = raw_crops(v)
    want = (region - region.mean()) / region.std()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # an affine change of scanner gain leaves it unchanged (what per-volume z-score is for)
    same = preprocess_volume(scan(0, "a"), cfg(standardise="zscore_cord")).images
    np.testing.assert_allclose(same.numpy(), got[:, None], atol=1e-4)


def test_map_to_scale_is_np_interp_with_linear_ends():
    rng = np.random.default_rng(1)
    x = rng.normal(size=500) * 3
    own = np.array([-2.0, -0.5, 0.1, 1.0, 2.5])
    scale = np.array([-1.0, 0.0, 0.3, 0.9, 3.0])
    got = map_to_scale(torch.tensor(x), torch.tensor(own), torch.tensor(scale)).numpy()
    np.testing.assert_allclose(got, ref_map(x, own, scale), atol=1e-12)
    hand = map_to_scale(torch.tensor([-0.5, 0.4, 3.5]), torch.tensor(own), torch.tensor(scale))
    # on a landmark: its scale value; between: (0.4-0.1)/(1-0.1) of 0.3..0.9; beyond: slope 1.4
    np.testing.assert_allclose(hand.numpy(), [0.0, 0.5, 4.4], atol=1e-6)


def test_histogram_scale_comes_from_training_persons_only():
    config = cfg(standardise="histogram", histogram_landmarks=LANDMARKS)
    train_v = [scan(0, "a"), scan(1, "b", gain=2.0, offset=100.0)]
    val_v, test_v = scan(2, "c", gain=0.1), scan(3, "d", gain=7.0, offset=-50.0)

    def parts(val: Volume, test: Volume) -> tuple[SliceSet, SliceSet, SliceSet]:
        train = SliceSet.concat([preprocess_volume(v, config) for v in train_v])
        return train, preprocess_volume(val, config), preprocess_volume(test, config)

    scale, (train, val, test) = standardise_fold(*parts(val_v, test_v))
    zs = []
    for v in train_v:
        r = raw_crops(v)
        zs.append(np.percentile((r - r.mean()) / r.std(), LANDMARKS))
    want_scale = np.mean(zs, 0)
    np.testing.assert_allclose(scale, want_scale, atol=1e-5)
    # validation and test volumes are mapped, never learned from: other ones give the same scale
    other, _ = standardise_fold(*parts(scan(4, "c", gain=50.0), scan(5, "d", offset=9e3)))
    np.testing.assert_allclose(other, scale, atol=1e-9)
    for v, got in ((val_v, val), (test_v, test), (train_v[1], train.subset(range(5, 10)))):
        r = raw_crops(v)
        want = ref_map(r, np.percentile(r, LANDMARKS), want_scale)
        np.testing.assert_allclose(got.images[:, 0].double().numpy(), want, atol=2e-4)


def test_default_output_and_cache_key_are_unchanged():
    v = scan(0, "a")
    default = PreprocessConfig(spacing=1.0, size=(16, 16), drop_empty=False)
    assert set(default.cache_key()) == {"spacing", "size", "normalize", "drop_empty"}
    r = raw_crops(v)
    mean = r.mean((1, 2), keepdims=True)
    want = (r - mean) / r.std((1, 2), keepdims=True)  # per-slice z-score, as before
    got = preprocess_volume(v, default)
    np.testing.assert_allclose(got.images[:, 0].numpy(), want, atol=1e-5)
    assert got.landmarks is None


@pytest.mark.parametrize(("kw", "needle"), [
    ({"standardise": "zscore_cord", "normalize": "zscore"}, "normalize"),
    ({"standardise": "histogram", "normalize": "none"}, "normalize"),
    ({"histogram_landmarks": (1, 99)}, "histogram_landmarks"),
    ({"standardise": "zscore_cord", "histogram_landmarks": (1, 99)}, "histogram_landmarks"),
    ({"standardise": "histogram", "histogram_landmarks": (50, 10)}, "increasing"),
    ({"standardise": "histogram", "histogram_landmarks": (5,)}, "at least two"),
    ({"standardise": "histogram", "histogram_landmarks": (1, 101)}, "[0, 100]"),
])  # fmt: skip
def test_settings_without_effect_or_invalid_are_refused(kw, needle):
    with pytest.raises(ValidationError, match=needle.replace("[", r"\[")):
        PreprocessConfig(**kw)


def test_predict_standardises_located_crops_as_training_does():
    """With the region located where the cord is, predict's model input is training's."""
    from ada_core._geometry import plan_geometry, to_crops
    from ada_core.predict import _preparation

    v = scan(2, "a", gain=4.0, offset=30.0)
    for how in ("zscore_cord", "histogram"):
        extra = {"histogram_landmarks": LANDMARKS} if how == "histogram" else {}
        config = cfg(standardise=how, **extra)
        train = preprocess_volume(v, config)
        scale = [-1.5, -0.7, 0.0, 0.6, 2.5]
        want = train.images[:, 0]
        if train.landmarks is not None:
            want = map_to_scale(want, train.landmarks[0], torch.tensor(scale, dtype=torch.float64))
        geometry = plan_geometry(v.image.shape, v.spacing, config, [v.cord])
        got = _preparation(config, scale)(to_crops(v.image, geometry, "none"))
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


# --------------------------------------------------------------------------- real data, end to end

SESSIONS = ("sub-9418", "sub-9604", "sub-9709Ses1", "sub-9709Ses2")


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("how", ["zscore_cord", pytest.param("histogram", marks=pytest.mark.xfail(
    strict=True, reason="measured 2026-12-07: this 30-epoch two-person histogram model's "
    "selected checkpoint finds no GM on sub-9604, a training person, even on its own training "
    "slices as the engine prepares them (0 of 699 GM pixels), so with --cord too: a training "
    "outcome, not predict's preparation (its landmarks for sub-9604 are within 0.05 of "
    "training's); the LOSO study's histogram models reach 0.41 there (docs/data.md)"))])
def test_predict_without_cord_finds_the_gm_on_every_bids_session(how, shared_data, tmp_path):
    """A model trained on standardised BIDS data, segmenting every session without a cord
    mask, finds the grey matter where the cord-guided crops do (the lost first attempt took
    the first pass's statistics from the whole volume and found nothing on 3 of 4)."""
    import nibabel as nib

    from ada_core.api import run
    from ada_core.predict import load_run_checkpoint, predict_volume

    root = shared_data / "gm-challenge-dev"
    config = {
        "name": "std", "output": str(tmp_path),
        "data": {"name": "bids", "params": {"root": str(root)},
                 "preprocess": {"spacing": 0.5, "size": [64, 64], "standardise": how},
                 "split": {"val_fraction": 0.34, "seed": 0}},
        "model": {"name": "unet-paper", "params": {"width": 8, "depth": 3, "dropout": 0.0}},
        "attributors": [{"name": "none"}],
        "train": {"standard_epochs": 30, "cycles": 1, "ada_epochs": 1, "batch_size": 8,
                  "lr": 3e-3, "device": "cpu", "robustness": False},
    }  # fmt: skip
    run(config, mode="train", quiet=True, report=False)
    ckpt = load_run_checkpoint(tmp_path / "std", "standard")
    assert (ckpt.meta.get("standard_scale") is not None) == (how == "histogram")

    def canonical(path):
        img = nib.as_closest_canonical(nib.load(path))
        return np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]

    found = {}
    for sub in SESSIONS:
        stem = f"{sub}_run-1_T2starw"
        labels = root / "derivatives" / "labels" / sub / "anat"
        image, zooms = canonical(root / sub / "anat" / f"{stem}.nii.gz")
        truth = canonical(labels / f"{stem}_gmseg-manual.nii.gz")[0] > 0.5
        cord = (canonical(labels / f"{stem}_seg-manual.nii.gz")[0] > 0.5).astype(np.float32)
        dice = {}
        for mode, mask in (("cord", cord), ("located", None)):
            prob = predict_volume(ckpt.model, image, zooms, ckpt.preprocess, cord=mask,
                                  standard_scale=ckpt.meta.get("standard_scale"))  # fmt: skip
            pred = prob >= 0.5
            dice[mode] = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
        assert dice["cord"] > 0.2, (sub, dice)  # the model learned something
        found[sub] = dice
    train_persons = {"sub-9418", "sub-9604"}  # val_fraction 0.34, seed 0: Milan selects
    for sub, dice in found.items():
        if sub in train_persons:
            assert dice["located"] > dice["cord"] - 0.1, (sub, dice)
    missed = {s: d for s, d in found.items() if d["located"] <= d["cord"] - 0.1}
    if missed:  # a declared gap (docs/data.md), never silently passed
        pytest.xfail(f"located crops miss the GM of the unseen person's sessions {missed}: a "
                     "model trained on two persons gives confident false GM far from the cord "
                     "in the sliding window (standardised or not; docs/data.md)")


def test_job_keys_of_unstandardised_runs_are_those_from_before_the_setting():
    from ada_core.config import load_config
    from ada_core.engine import build_plan
    from ada_core.plugins import load_plugins

    registry = load_plugins()

    def pre(overrides):
        plan = build_plan(load_config(None, overrides), registry)
        return plan.standard_settings["data"]["preprocess"]

    default = pre([])
    assert "standardise" not in default and "histogram_landmarks" not in default
    assert "normalize" in default  # the settings that were there stay
    assert pre(["data.preprocess.standardise=none"]) == default
    z = pre(["data.preprocess.standardise=zscore_cord"])
    assert z["standardise"] == "zscore_cord" and "histogram_landmarks" not in z
    h = pre(["data.preprocess.standardise=histogram"])
    assert h["standardise"] == "histogram" and list(h["histogram_landmarks"]) == [1.0, *(10.0 * k for k in range(1, 10)), 99.0]
