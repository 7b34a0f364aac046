"""The SCGM challenge loader on a fake challenge tree built from the real SCT test volumes."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ada_core.data import DataWarning, PreprocessConfig, load_slices
from ada_core.errors import ConfigError, DataError
from ada_core.plugins import load_plugins
from ada_core.testing import DatasetContract
from conftest import SHARED_DATA

SCT = SHARED_DATA / "sct-testing-t2s"
PRE = PreprocessConfig(spacing=0.5, size=(48, 48))


def _real():
    if not (SCT / "t2s.nii.gz").exists():
        pytest.skip(f"real MRI test data not found at {SCT} (see ../shared/data/README.md)")
    img = nib.load(SCT / "t2s.nii.gz")
    gm = np.asanyarray(nib.load(SCT / "t2s_gmseg_manual.nii.gz").dataobj).astype(np.uint8)
    cord = np.asanyarray(nib.load(SCT / "t2s_seg.nii.gz").dataobj).astype(np.uint8)
    return img, gm, cord


def rater_masks(gm: np.ndarray, cord: np.ndarray) -> list[np.ndarray]:
    """Four raters: the manual GM, dilated, eroded, and with 2 = 'other structure' (white matter)."""
    r2 = ndimage.binary_dilation(gm, iterations=1).astype(np.uint8)
    r3 = ndimage.binary_erosion(gm, iterations=1).astype(np.uint8)
    r4 = gm.copy()
    r4[(cord == 1) & (gm == 0)] = 2
    return [gm, r2, r3, r4]


def save(data: np.ndarray, affine: np.ndarray, path: Path, dtype=np.uint8) -> None:
    nib.save(nib.Nifti1Image(data.astype(dtype), affine), str(path))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """site1-sc01, site1-sc02, site2-sc01 labelled by 4 raters; site2-sc11 unlabelled (test)."""
    img, gm, cord = _real()
    root = tmp_path_factory.mktemp("scgm")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    for key in ("site1-sc01", "site1-sc02", "site2-sc01", "site2-sc11"):
        save(data, img.affine, root / f"{key}-image.nii.gz", np.float32)
        if key.endswith("sc11"):
            continue
        for r, m in enumerate(rater_masks(gm, cord), 1):
            save(m, img.affine, root / f"{key}-mask-r{r}.nii.gz")
    (root / "site1-sc01-levels.txt").write_text("C2\n")
    return root


def build(registry, root: Path, **params):
    return registry.datasets.build("scgm", {"root": str(root), **params})


def canonical_raters(tree: Path, key: str) -> list[np.ndarray]:
    """The raters' masks by hand: t2s is LAS, so canonical RAS flips the first axis."""
    assert nib.aff2axcodes(nib.load(tree / f"{key}-image.nii.gz").affine) == ("L", "A", "S")
    return [np.asanyarray(nib.load(tree / f"{key}-mask-r{r}.nii.gz").dataobj)[::-1]
            for r in range(1, 5)]  # fmt: skip


def test_subjects_under_each_policy(registry, tree):
    each = build(registry, tree).subjects()
    assert [s.id for s in each[:4]] == [f"site1-sc01-r{r}" for r in range(1, 5)]
    assert len(each) == 13 and {s.group for s in each[:4]} == {"site1-sc01"}
    assert each[-1].id == "site2-sc11" and not each[-1].labelled and each[-1].site == "site2"
    majority = build(registry, tree, raters="majority").subjects()
    assert [s.id for s in majority] == ["site1-sc01", "site1-sc02", "site2-sc01", "site2-sc11"]


@pytest.mark.parametrize("tie, need", [("gm", 2), ("background", 3)])
def test_majority_vote_and_tie_rule(registry, tree, tie, need):
    ds = build(registry, tree, raters="majority", tie=tie)
    vol = ds.load(ds.subjects()[0])
    votes = sum((m == 1).astype(int) for m in canonical_raters(tree, "site1-sc01"))
    np.testing.assert_array_equal(vol.mask, (votes >= need).astype(np.uint8))
    assert vol.mask.dtype == np.uint8 and vol.image.dtype == np.float32
    raw = np.asanyarray(nib.load(tree / "site1-sc01-image.nii.gz").dataobj)
    np.testing.assert_array_equal(vol.image, raw[::-1])
    assert vol.spacing == pytest.approx((0.5, 0.5, 7.5), rel=1e-5)


def test_each_and_single_rater_give_that_raters_gm(registry, tree):
    truth = canonical_raters(tree, "site1-sc01")
    each = build(registry, tree)
    for r in (1, 4):  # rater 4 marks white matter with 2: not GM
        vol = each.load(each.subjects()[r - 1])
        np.testing.assert_array_equal(vol.mask, (truth[r - 1] == 1).astype(np.uint8))
    one = build(registry, tree, raters="rater:2")
    np.testing.assert_array_equal(one.load(one.subjects()[0]).mask, truth[1].astype(np.uint8))


@pytest.mark.parametrize("raters", ["each", "majority", "rater:3"])
def test_load_slices_under_each_policy(registry, tree, raters):
    with pytest.warns(DataWarning, match="unlabelled subjects not used: site2-sc11"):
        slices = load_slices(build(registry, tree, raters=raters), PRE)
    per_image = 4 if raters == "each" else 1
    assert len(set(slices.subject)) == 3 * per_image
    assert set(slices.group) == {"site1-sc01", "site1-sc02", "site2-sc01"}
    assert slices.images.shape[1:] == (1, 48, 48)
    assert bool((slices.masks.flatten(1).amax(1) == 1).all())
    truth = [(m == 1) for m in canonical_raters(tree, "site1-sc01")]
    refs = {"each": truth, "majority": [sum(t.astype(int) for t in truth) >= 2], "rater:3": truth[2:3]}
    expected = sum(int(m.any(axis=(0, 1)).sum()) for m in refs[raters])  # slices with GM
    assert len(slices) == 3 * expected


def test_filters(registry, tree):
    assert {s.site for s in build(registry, tree, sites=[2]).subjects()} == {"site2"}
    ids = [s.id for s in build(registry, tree, raters="majority", subjects=["site1-sc02"]).subjects()]
    assert ids == ["site1-sc02"]
    # A rater's id (as results tables name it) selects that rater of its image.
    ids = [s.id for s in build(registry, tree, subjects=["site1-sc02-r2"]).subjects()]
    assert ids == ["site1-sc02-r2"]
    ids = [s.id for s in build(registry, tree, raters="majority", subjects=["site1-sc02-r2"]).subjects()]
    assert ids == ["site1-sc02"]
    with pytest.raises(DataError, match="'site1-sc3' not in .*Did you mean 'site1-sc0"):
        build(registry, tree, subjects=["site1-sc3"]).subjects()
    with pytest.raises(DataError, match="filters select nothing.*site1"):
        build(registry, tree, sites=[9]).subjects()


def test_bad_config_and_missing_root(registry, tmp_path):
    with pytest.raises(ConfigError, match="raters"):
        registry.datasets.build("scgm", {"raters": "rater:x"})
    with pytest.raises(DataError, match="is not a folder"):
        build(registry, tmp_path / "nope").subjects()
    with pytest.raises(DataError, match="no site\\*-sc\\*-image"):
        build(registry, tmp_path).subjects()  # an empty data set


# --------------------------------------------------------------------------- bad files


@pytest.fixture
def broken(tree, tmp_path) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(tree, root)
    return root


def test_missing_rater_mask(registry, broken):
    (broken / "site1-sc02-mask-r3.nii.gz").unlink()
    ds = build(registry, broken, raters="majority")
    with pytest.raises(DataError, match=r"site1-sc02-mask-r3\.nii\.gz: rater mask missing"):
        ds.load(ds.subjects()[1])
    with pytest.warns(DataWarning) as rec:
        slices = load_slices(ds, PRE.model_copy(update={"on_error": "skip"}))
    assert any("site1-sc02-mask-r3" in str(w.message) for w in rec)
    assert set(slices.subject) == {"site1-sc01", "site2-sc01"}  # the others are kept
    each = build(registry, broken)  # 'each': raters 1, 2, 4 load; rater 3 fails by name
    with pytest.raises(DataError, match="mask-r3"):
        load_slices(each, PRE)


def test_mask_without_image(registry, broken):
    (broken / "site1-sc02-image.nii.gz").unlink()
    ds = build(registry, broken, raters="majority")
    with pytest.raises(DataError, match=r"site1-sc02-image\.nii\.gz: image missing"):
        ds.load(next(s for s in ds.subjects() if s.id == "site1-sc02"))


def test_shape_mismatch_names_both_files_and_shapes(registry, broken):
    save(np.zeros((49, 54, 8)), nib.load(broken / "site1-sc01-image.nii.gz").affine,
         broken / "site1-sc01-mask-r1.nii.gz")  # fmt: skip
    ds = build(registry, broken, raters="rater:1")
    with pytest.raises(DataError) as err:
        ds.load(ds.subjects()[0])
    msg = str(err.value)
    assert "site1-sc01-image.nii.gz" in msg and "site1-sc01-mask-r1.nii.gz" in msg
    assert "(49, 54, 9)" in msg and "(49, 54, 8)" in msg


def test_affine_mismatch_names_both_files_and_affines(registry, broken):
    img = nib.load(broken / "site1-sc01-image.nii.gz")
    affine = img.affine.copy()
    affine[0, 3] += 5.0
    mask = np.asanyarray(nib.load(broken / "site1-sc01-mask-r1.nii.gz").dataobj)
    save(mask, affine, broken / "site1-sc01-mask-r1.nii.gz")
    ds = build(registry, broken, raters="rater:1")
    with pytest.raises(DataError, match="affine mismatch") as err:
        ds.load(ds.subjects()[0])
    msg = str(err.value)
    assert "site1-sc01-image.nii.gz" in msg and "site1-sc01-mask-r1.nii.gz" in msg
    assert f"{img.affine[0, 3]:.4f}".rstrip("0") in msg and f"{affine[0, 3]:.4f}".rstrip("0") in msg


def test_truncated_file(registry, broken):
    path = broken / "site2-sc01-image.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ds = build(registry, broken, raters="majority")
    with pytest.raises(DataError, match=r"site2-sc01-image\.nii\.gz: cannot read NIfTI"):
        ds.load(ds.subjects()[2])


def test_nan_voxels(registry, broken):
    img = nib.load(broken / "site1-sc01-image.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[3, 4, 5] = np.nan
    data[0, 0, 0] = np.inf
    save(data, img.affine, broken / "site1-sc01-image.nii.gz", np.float32)
    ds = build(registry, broken, raters="majority")
    with pytest.raises(DataError, match=r"site1-sc01-image\.nii\.gz: 2 NaN or infinite voxels"):
        ds.load(ds.subjects()[0])


def test_non_binary_label_fails_unless_thresholded(registry, broken):
    path = broken / "site1-sc01-mask-r1.nii.gz"
    img = nib.load(path)
    soft = np.asanyarray(img.dataobj).astype(np.float32) * 0.8
    save(soft, img.affine, path, np.float32)
    ds = build(registry, broken, raters="rater:1")
    with pytest.raises(DataError, match=r"mask-r1\.nii\.gz: label has fractional values \[0\.8\] "
                                        r"\(a soft label\); set label_threshold"):  # fmt: skip
        ds.load(ds.subjects()[0])
    ok = build(registry, broken, raters="rater:1", label_threshold=0.5).load(ds.subjects()[0])
    assert ok.mask.sum() == (soft >= 0.5).sum()


def test_fingerprint_changes_with_files(registry, broken):
    ds = build(registry, broken)
    before = ds.fingerprint()
    path = broken / "site1-sc01-levels.txt"  # not a data file: no change
    path.write_text("C3\n")
    assert ds.fingerprint() == before
    with gzip.open(broken / "site1-sc02-mask-r2.nii.gz", "rb") as fh:
        raw = fh.read()
    with gzip.open(broken / "site1-sc02-mask-r2.nii.gz", "wb", compresslevel=1) as fh:
        fh.write(raw)
    assert ds.fingerprint() != before


class TestScgmContract(DatasetContract):
    @pytest.fixture
    def dataset(self, tree):
        return load_plugins().datasets.build("scgm", {"root": str(tree), "raters": "majority"})

    @pytest.fixture
    def contract_preprocess(self):
        return PRE.model_copy(update={"cache": False})


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_other_structure_labels_never_become_gm(threshold, tmp_path):
    """Rater masks mark other structures with integers > 1: they are background, thresholded
    soft labels included (hand-computed expectation)."""
    from ada_scgm._nifti import Nifti, binary_label

    values = np.array([0, 1, 2, 3, 1, 0], dtype=float) if threshold is None else np.array(
        [0, 1, 2, 3, 0.6, 0.4]
    )
    data = values.reshape(1, 1, -1)
    label = Nifti(tmp_path / "m.nii.gz", data, (1.0, 1.0, 1.0), np.eye(4), data.shape)
    got = binary_label(label, other_structures=True, threshold=threshold).ravel().tolist()
    assert got == [0, 1, 0, 0, 1, 0]
