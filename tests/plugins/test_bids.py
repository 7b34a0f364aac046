"""The BIDS loader: the real gm-challenge-dev acceptance test and fake trees for the error paths."""

from __future__ import annotations

import collections
import shutil
import tomllib
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from ada_core.data import DataWarning, PreprocessConfig, load_slices
from ada_core.splits import SplitConfig, fold_slices, plan_folds, split_slices
from ada_core.config import apply_overrides, parse_config
from ada_core.errors import ConfigError, DataError
from ada_core.plugins import load_plugins
from ada_core.testing import DatasetContract
from conftest import SHARED_DATA

DATA = SHARED_DATA
GMDEV = DATA / "gm-challenge-dev"
SCT = DATA / "sct-testing-t2s"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real MRI test data not found at {path} (see ../shared/data/README.md)")
    return path


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def dev_slices(registry):
    ds = registry.datasets.build("bids", {"root": str(_need(GMDEV))})
    return ds, load_slices(ds, PreprocessConfig())  # the defaults: 0.25 mm, 200 x 200


def test_gm_challenge_dev_acceptance(dev_slices):
    ds, slices = dev_slices
    assert slices.images.shape[1:] == (1, 200, 200)
    assert bool((slices.masks.flatten(1).amax(1) == 1).all())  # GM in each slice
    assert collections.Counter(slices.site) == {"UCL": 17, "Philips": 15, "Milan": 40}
    assert collections.Counter(slices.subject) == {
        "sub-9418": 17, "sub-9604": 15, "sub-9709Ses1": 20, "sub-9709Ses2": 20,
    }  # fmt: skip
    torch.testing.assert_close(slices.spacing, torch.full((72, 2), 0.25), rtol=1e-3, atol=0)
    means = slices.images.mean((1, 2, 3))
    assert bool((means.abs() < 1e-4).all())  # z-scored per slice


def test_sessions_of_one_person_stay_together(dev_slices):
    ds, slices = dev_slices
    persons = {s.id: s.group for s in ds.subjects()}
    assert persons["sub-9709Ses1"] == persons["sub-9709Ses2"] == "sub-9709"
    assert persons["sub-9418"] == "sub-9418"
    for seed in range(6):
        train, val = split_slices(slices, SplitConfig(val_fraction=0.34, seed=seed))
        for part in (train, val):
            assert {"sub-9709Ses1", "sub-9709Ses2"} <= set(part.subject) or not (
                {"sub-9709Ses1", "sub-9709Ses2"} & set(part.subject)
            )
    train, val = split_slices(slices, SplitConfig(method="site", val_site="Milan"))
    assert set(val.subject) == {"sub-9709Ses1", "sub-9709Ses2"} and len(train) == 32


def test_held_out_test_parts_on_the_real_sessions(dev_slices):
    """3 persons at 3 sites; sub-9709Ses1/Ses2 are one person at Milan (hand-computed parts)."""
    _, slices = dev_slices
    args = (slices.group, slices.site)
    folds = plan_folds(*args, SplitConfig(test="loso"), subjects=slices.subject)
    assert [f.name for f in folds] == ["site-milan", "site-philips", "site-ucl"]
    for fold, tested in zip(folds, (["sub-9709Ses1", "sub-9709Ses2"], ["sub-9604"], ["sub-9418"])):
        train, val, test = fold_slices(slices, fold)
        assert sorted(set(test.subject)) == tested and len(train) + len(val) + len(test) == 72
        assert len(set(train.group)) == len(set(val.group)) == 1  # the other two persons
        assert len(test) == {"site-milan": 40, "site-philips": 15, "site-ucl": 17}[fold.name]
    for listed in (["sub-9709Ses2"], ["sub-9709"]):  # a session takes its whole person
        config = SplitConfig(test="subjects", test_subjects=listed, val_fraction=0.5)
        (fold,) = plan_folds(*args, config, subjects=slices.subject)
        train, val, test = fold_slices(slices, fold)
        assert set(test.subject) == {"sub-9709Ses1", "sub-9709Ses2"} and len(test) == 40
        assert {train.subject[0], val.subject[0]} == {"sub-9418", "sub-9604"}
    config = SplitConfig(method="site", val_site="UCL", test="sites", test_sites=["Milan"])
    train, val, test = fold_slices(slices, plan_folds(*args, config)[0])
    assert (set(train.site), set(val.site), set(test.site)) == ({"Philips"}, {"UCL"}, {"Milan"})
    with pytest.raises(ConfigError, match=r"test_sites: 'milan' is not a site.*Did you mean 'Milan'"):
        plan_folds(*args, SplitConfig(test="sites", test_sites=["milan"]))
    with pytest.raises(DataError, match=r"only 1 person\(s\) left after the 2 test"):
        plan_folds(*args, SplitConfig(test="subjects", test_subjects=["sub-9418", "sub-9604"]))


def test_lps_image_is_reoriented_to_canonical(registry):
    ds = registry.datasets.build("bids", {"root": str(_need(GMDEV)), "subjects": ["sub-9604"]})
    raw = nib.load(GMDEV / "sub-9604/anat/sub-9604_run-1_T2starw.nii.gz")
    assert nib.aff2axcodes(raw.affine) == ("L", "P", "S")
    vol = ds.load(ds.subjects()[0])
    np.testing.assert_array_equal(vol.image, np.asanyarray(raw.dataobj)[::-1, ::-1])
    assert vol.cord is not None and vol.cord.shape == vol.image.shape
    assert set(np.unique(vol.mask)) == {0, 1} and vol.mask.dtype == np.uint8


# --------------------------------------------------------------------------- fake trees


def _write(data, affine, path: Path, dtype=np.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype), affine), str(path))


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    """sub-01 with ses-1 and ses-2 folders, sub-02 without a label; custom suffixes and column."""
    _need(SCT / "t2s.nii.gz")
    img = nib.load(SCT / "t2s.nii.gz")
    data = np.asanyarray(img.dataobj)
    gm = np.asanyarray(nib.load(SCT / "t2s_gmseg_manual.nii.gz").dataobj)
    root = tmp_path_factory.mktemp("bids")
    for rel in ("sub-01/ses-1/anat", "sub-01/ses-2/anat", "sub-02/anat"):
        stem = rel.split("/anat")[0].replace("/", "_")
        _write(data, img.affine, root / rel / f"{stem}_T2w.nii.gz")
        if not rel.startswith("sub-02"):
            _write(gm, img.affine, root / "derivatives/manual" / rel / f"{stem}_T2w_label-GM.nii.gz",
                   np.uint8)  # fmt: skip
    (root / "participants.tsv").write_text("participant_id\tcenter\nsub-01\tA\nsub-02\tB\n")
    return root


FAKE = dict(image_suffix="T2w", label_suffix="label-GM", labels_dir="derivatives/manual",
            site_column="center", cord_suffix=None)  # fmt: skip


def build(registry, root, **params):
    return registry.datasets.build("bids", {"root": str(root), **FAKE, **params})


def test_configurable_suffixes_sessions_and_site_column(registry, fake):
    subjects = build(registry, fake).subjects()
    assert [(s.id, s.site, s.group, s.session, s.labelled) for s in subjects] == [
        ("sub-01_ses-1", "A", "sub-01", "1", True),
        ("sub-01_ses-2", "A", "sub-01", "2", True),
        ("sub-02", "B", "sub-02", None, False),
    ]
    with pytest.warns(DataWarning, match="1 unlabelled subjects not used: sub-02"):
        slices = load_slices(build(registry, fake), PreprocessConfig(spacing=0.5, size=(32, 32)))
    assert set(slices.subject) == {"sub-01_ses-1", "sub-01_ses-2"}
    assert [s.id for s in build(registry, fake, sites=["B"]).subjects()] == ["sub-02"]


def test_missing_label_as_error_names_the_expected_file(registry, fake):
    ds = build(registry, fake, missing_label="error")
    sub02 = next(s for s in ds.subjects() if s.id == "sub-02")
    assert sub02.labelled
    with pytest.raises(DataError, match=r"sub-02_T2w_label-GM\.nii\.gz: GM label missing for image"):
        ds.load(sub02)


def test_participants_problems(registry, fake, tmp_path):
    with pytest.raises(DataError, match="no column 'Site'.*Valid choices: 'center', 'participant_id'"):
        build(registry, fake, site_column="Site").subjects()
    root = tmp_path / "copy"
    shutil.copytree(fake, root)
    (root / "participants.tsv").unlink()
    with pytest.raises(DataError, match="participants.tsv: not found") as err:
        build(registry, root).subjects()
    # The message's spellings work: in TOML and as --set (quoted or not by the shell).
    assert 'site_column = ""' in str(err.value)
    assert '--set data.params.site_column=""' in str(err.value)
    toml = tomllib.loads('[data]\nname = "bids"\n[data.params]\nsite_column = ""\n')
    for data in (toml, apply_overrides({}, ['data.params.site_column=""']),
                 apply_overrides({}, ["data.params.site_column="])):  # fmt: skip
        params = parse_config(data).data.params
        assert params == {"site_column": ""}
        ds = build(registry, root, **params)
        assert {s.site for s in ds.subjects()} == {"unknown"}
    assert build(registry, root, site_column=None).config.site_column == ""  # Python callers


def test_empty_and_wrong_suffix(registry, tmp_path, fake):
    with pytest.raises(DataError, match="no images"):
        build(registry, tmp_path).subjects()
    with pytest.raises(DataError, match="no images .*_T1w"):
        build(registry, fake, image_suffix="T1w").subjects()
    with pytest.raises(DataError, match="'sub-03' not found.*Did you mean"):
        build(registry, fake, subjects=["sub-03"]).subjects()
    with pytest.raises(DataError, match="person_pattern needs a named group"):
        build(registry, fake, person_pattern="(.*)")


def test_label_with_other_grid_names_both_files(registry, fake, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(fake, root)
    label = root / "derivatives/manual/sub-01/ses-1/anat/sub-01_ses-1_T2w_label-GM.nii.gz"
    _write(np.zeros((10, 10, 9)), np.eye(4), label, np.uint8)
    ds = build(registry, root)
    with pytest.raises(DataError) as err:
        ds.load(ds.subjects()[0])
    assert "sub-01_ses-1_T2w.nii.gz" in str(err.value) and label.name in str(err.value)
    assert "(49, 54, 9)" in str(err.value) and "(10, 10, 9)" in str(err.value)
    with pytest.warns(DataWarning) as rec:
        slices = load_slices(ds, PreprocessConfig(spacing=0.5, size=(32, 32), on_error="skip"))
    assert any("skipped subject 'sub-01_ses-1'" in str(w.message) for w in rec)
    assert set(slices.subject) == {"sub-01_ses-2"}


LABEL = "derivatives/manual/sub-01/ses-1/anat/sub-01_ses-1_T2w_label-GM.nii.gz"


@pytest.fixture
def multi_label(fake, tmp_path) -> tuple[Path, np.ndarray]:
    """The fake tree with sub-01 ses-1's real GM label rewritten as SCGM's originals are: 1 GM,
    2 the rest of the cord (white matter), 3 a block outside it; returns the root and the
    rewritten voxels as nibabel reads them (canonical orientation, as the loader)."""
    root = tmp_path / "multi"
    shutil.copytree(fake, root)
    gm = np.asanyarray(nib.load(SCT / "t2s_gmseg_manual.nii.gz").dataobj).astype(np.uint8)
    cord = np.asanyarray(nib.load(SCT / "t2s_seg.nii.gz").dataobj) > 0.5
    values = gm.copy()
    values[cord & (gm == 0)] = 2
    values[:5, :5, :] = 3
    assert {0, 1, 2, 3} <= set(np.unique(values).tolist())
    _write(values, nib.load(root / LABEL).affine, root / LABEL, np.uint8)
    canonical = np.asanyarray(nib.as_closest_canonical(nib.load(root / LABEL)).dataobj)
    return root, canonical


def test_other_structure_values_are_never_gm(registry, multi_label):
    root, values = multi_label
    ds = build(registry, root)
    subject = ds.subjects()[0]
    with pytest.raises(DataError, match=r"label-GM\.nii\.gz: label has integer values \[2, 3\]") as e:
        ds.load(subject)
    msg = str(e.value)
    assert 'other_values = "background"' in msg and "gm_values" in msg
    assert "set label_threshold" not in msg  # the old advice turned white matter into GM
    for extra in ({}, {"label_threshold": 0.5}, {"label_threshold": 1.0}):
        mask = build(registry, root, other_values="background", **extra).load(subject).mask
        np.testing.assert_array_equal(mask, (values == 1).astype(np.uint8), err_msg=str(extra))
    mask = build(registry, root, other_values="background", gm_values=[1, 3]).load(subject).mask
    np.testing.assert_array_equal(mask, np.isin(values, [1, 3]).astype(np.uint8))
    with pytest.raises(DataError, match=r"integer values \[2\]"):  # 3 is GM now, 2 is not
        build(registry, root, gm_values=[1, 3]).load(subject)


@pytest.mark.parametrize(
    "values, params, expected",
    [
        ([0, 1, 0.3, 0.5, 0.7, 1, 0], {"threshold": 0.5}, [0, 1, 0, 1, 1, 1, 0]),
        ([0, 1, 2, 3, 0.6, 0.4, 7], {"threshold": 0.5, "other_structures": True},
         [0, 1, 0, 0, 1, 0, 0]),
        ([0, 2, 1, 3], {"gm_values": (2,), "other_structures": True}, [0, 1, 0, 0]),
        ([0, 255, 255, 0], {"gm_values": (255,)}, [0, 1, 1, 0]),
    ],
)
def test_binary_label_hand_computed(values, params, expected, tmp_path):
    from ada_scgm._nifti import Nifti, binary_label

    data = np.array(values, dtype=float).reshape(1, 1, -1)
    label = Nifti(tmp_path / "m.nii.gz", data, (1.0, 1.0, 1.0), np.eye(4), data.shape)
    assert binary_label(label, **params).ravel().tolist() == expected


@pytest.mark.parametrize(
    "values, params, message",
    [
        ([0, 1, -1], {}, r"values \[-1\] that are neither 0, integer structure codes nor soft"),
        ([0, 1.5], {"threshold": 0.5}, r"values \[1\.5\] that are neither"),
        ([0, 0.25], {}, r"fractional values \[0\.25\] \(a soft label\); set label_threshold"),
        ([0, 1, 4], {"values_setting": None}, r"integer values \[4\].*background\.? \("),
    ],
)
def test_binary_label_errors_give_the_fitting_advice(values, params, message, tmp_path):
    from ada_scgm._nifti import Nifti, binary_label

    data = np.array(values, dtype=float).reshape(1, 1, -1)
    label = Nifti(tmp_path / "m.nii.gz", data, (1.0, 1.0, 1.0), np.eye(4), data.shape)
    with pytest.raises(DataError, match=message) as err:
        binary_label(label, **params)
    if params.get("values_setting", "") is None:
        assert "gm_values" not in str(err.value)  # cord labels have no such setting


@pytest.mark.parametrize(
    "params, key",
    [({"label_threshold": 1.5}, "label_threshold"), ({"label_threshold": 0}, "label_threshold"),
     ({"gm_values": [0]}, "gm_values"), ({"gm_values": []}, "gm_values"),
     ({"other_values": "wm"}, "other_values")],
)  # fmt: skip
def test_label_settings_are_checked(registry, fake, params, key):
    with pytest.raises(ConfigError, match=key):
        build(registry, fake, **params)


def test_labels_without_image_are_reported(registry, fake, tmp_path):
    root = tmp_path / "orphans"
    shutil.copytree(fake, root)
    (root / "sub-01/ses-2/anat/sub-01_ses-2_T2w.nii.gz").unlink()
    label = root / "derivatives/manual/sub-01/ses-2/anat/sub-01_ses-2_T2w_label-GM.nii.gz"
    with pytest.warns(DataWarning, match=r"1 label file\(s\) without an image, not used") as rec:
        subjects = build(registry, root).subjects()
    msg = str(rec[0].message)
    assert str(label) in msg and str(root / "sub-01/ses-2/anat/sub-01_ses-2_T2w.nii.gz") in msg
    assert [s.id for s in subjects] == ["sub-01_ses-1", "sub-02"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete tree warns about nothing
        build(registry, fake).subjects()


def test_uncompressed_labels_are_found(registry, fake, tmp_path):
    root = tmp_path / "plain"
    shutil.copytree(fake, root)
    gz = root / LABEL
    nib.save(nib.load(gz), str(gz.with_suffix("")))  # .nii
    gz.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        subject = build(registry, root).subjects()[0]
    assert subject.labelled and build(registry, root).load(subject).mask.sum() > 0


class TestBidsContract(DatasetContract):
    @pytest.fixture
    def dataset(self, fake):
        return load_plugins().datasets.build("bids", {"root": str(fake), **FAKE})


# --------------------------------------------------------------------------- stable ids


@pytest.fixture
def runs_tree(tmp_path) -> Path:
    """The GM-challenge naming with a second, unlabelled run beside run-1 for sub-9584 and
    sub-9709Ses1 (as the full public snapshot has), sessions in folders for sub-01."""
    _need(SCT / "t2s.nii.gz")
    img = nib.load(SCT / "t2s.nii.gz")
    data = np.asanyarray(img.dataobj)
    gm = np.asanyarray(nib.load(SCT / "t2s_gmseg_manual.nii.gz").dataobj)
    root = tmp_path / "runs"
    scans = [("sub-9584", "run-1", True), ("sub-9584", "run-2", False),
             ("sub-9604", "run-1", True), ("sub-9709Ses1", "run-1", True),
             ("sub-9709Ses1", "run-2", False), ("sub-9709Ses2", "run-1", True),
             ("sub-01/ses-1", "run-1", True), ("sub-01/ses-2", "run-1", True)]  # fmt: skip
    for folder, run, labelled in scans:
        stem = folder.replace("/", "_") + f"_{run}_T2starw"
        _write(data, img.affine, root / folder / "anat" / f"{stem}.nii.gz")
        if labelled:
            _write(gm, img.affine, root / "derivatives/labels" / folder / "anat"
                   / f"{stem}_gmseg-manual.nii.gz", np.uint8)  # fmt: skip
    (root / "participants.tsv").write_text(
        "participant_id\tSite\nsub-9584\tA\nsub-9604\tB\nsub-9709Ses1\tC\nsub-9709Ses2\tC\n"
        "sub-01\tA\n"
    )
    return root


def _bids(registry, root, **params):
    return registry.datasets.build("bids", {"root": str(root), "cord_suffix": "", **params})


def test_ids_are_participant_ids_and_extra_runs_are_runs(registry, runs_tree):
    subjects = _bids(registry, runs_tree).subjects()
    assert [(s.id, s.group, s.session, s.labelled) for s in subjects] == [
        ("sub-01_ses-1", "sub-01", "1", True),
        ("sub-01_ses-2", "sub-01", "2", True),
        ("sub-9584", "sub-9584", None, True),
        ("sub-9584_run-2", "sub-9584", None, False),
        ("sub-9604", "sub-9604", None, True),
        ("sub-9709Ses1", "sub-9709", "Ses1", True),
        ("sub-9709Ses1_run-2", "sub-9709", "Ses1", False),
        ("sub-9709Ses2", "sub-9709", "Ses2", True),
    ]
    # Removing the extra runs renames nobody.
    for p in runs_tree.glob("sub-*/anat/*_run-2_*"):
        p.unlink()
    assert [s.id for s in _bids(registry, runs_tree).subjects()] == [
        "sub-01_ses-1", "sub-01_ses-2", "sub-9584", "sub-9604", "sub-9709Ses1", "sub-9709Ses2"]


@pytest.mark.parametrize(
    "listed, selected",
    [(["sub-9584"], ["sub-9584", "sub-9584_run-2"]),  # the participants.tsv id: all its runs
     (["sub-9584_run-2"], ["sub-9584_run-2"]),  # one scan
     (["sub-01"], ["sub-01_ses-1", "sub-01_ses-2"]),  # a participant with session folders
     (["sub-01_ses-2"], ["sub-01_ses-2"]),
     (["sub-9709"], ["sub-9709Ses1", "sub-9709Ses1_run-2", "sub-9709Ses2"])],  # a person
)  # fmt: skip
def test_the_subjects_filter_takes_participant_session_and_scan_ids(registry, runs_tree, listed,
                                                                     selected):  # fmt: skip
    assert [s.id for s in _bids(registry, runs_tree, subjects=listed).subjects()] == selected


@pytest.mark.parametrize(
    "typed, near",
    [("sub-9584_run1", "sub-9584"), ("SUB-9604", "sub-9604"), ("sub-9584_run-3", "sub-9584"),
     ("sub-01_ses-3", "sub-01")],
)
def test_a_wrong_id_suggests_the_same_person_never_another(registry, runs_tree, typed, near):
    with pytest.raises(DataError, match=f"subject {typed!r} not found") as err:
        _bids(registry, runs_tree, subjects=[typed]).subjects()
    assert str(err.value).endswith(f"Did you mean {near!r}?")


def test_a_listed_session_takes_its_person_into_the_test_part(registry, runs_tree):
    """docs/data.md: test_subjects may name a session; the whole person is held out."""
    subjects = [s for s in _bids(registry, runs_tree).subjects() if s.labelled]
    groups, sites, ids = ([s.group for s in subjects], [s.site for s in subjects],
                          [s.id for s in subjects])  # fmt: skip
    for listed in (["sub-9709Ses1"], ["sub-9709"], ["sub-01_ses-2"], ["sub-9584"]):
        config = SplitConfig(test="subjects", test_subjects=listed, val_fraction=0.3)
        (fold,) = plan_folds(groups, sites, config, subjects=ids)
        person = dict(zip(ids, groups))[listed[0]] if listed[0] in ids else listed[0]
        assert fold.test == {person}, listed


def test_notes_of_a_cached_data_set_are_shown_again(registry, runs_tree, tmp_path):
    config = PreprocessConfig(spacing=0.5, size=(32, 32))
    for run in ("first", "cached"):
        with pytest.warns(DataWarning, match="2 unlabelled subjects not used: sub-9584_run-2, "
                          "sub-9709Ses1_run-2") as rec:  # fmt: skip
            slices = load_slices(_bids(registry, runs_tree), config, cache_dir=tmp_path / "cache")
        assert len(list((tmp_path / "cache").glob("bids-*.pt"))) == 1, run
        assert len([w for w in rec if issubclass(w.category, DataWarning)]) == 1, run
        assert slices.notes == ["2 unlabelled subjects not used: sub-9584_run-2, sub-9709Ses1_run-2"]


def test_participants_tsv_that_is_not_utf8_names_the_file(registry, runs_tree):
    tsv = runs_tree / "participants.tsv"
    tsv.write_bytes("participant_id\tSite\nsub-9584\tZürich\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"participants\.tsv: not UTF-8 text \(byte 0xfc"):
        _bids(registry, runs_tree).subjects()
    tsv.write_bytes("\ufeffparticipant_id\tSite\nsub-9584\tZürich\n".encode())  # a BOM is fine
    assert {s.site for s in _bids(registry, runs_tree, subjects=["sub-9584"]).subjects()} == {"Zürich"}


# --------------------------------------------------------------------------- validate = compare's checks


def _broken(kind: str, image: Path, label: Path) -> Path:
    """Damage sub-02's image or label as ``kind`` says; returns the damaged file."""
    img = nib.load(image)
    data = np.asanyarray(img.dataobj).astype(np.float32)
    if kind == "not-nifti":
        image.write_text("this is a text file named .nii.gz\n")
        return image
    if kind == "truncated":
        raw = image.read_bytes()
        image.write_bytes(raw[: len(raw) // 2])
        return image
    if kind == "nan":
        data[3, 4, 5] = np.nan
        _write(data, img.affine, image)
        return image
    if kind == "2d":
        _write(data[..., 0], img.affine, image)
        return image
    if kind == "5d":
        _write(data[..., None, None].repeat(2, axis=4), img.affine, image)
        return image
    if kind == "shape":
        _write(np.zeros((40, 54, 9)), img.affine, label, np.uint8)
        return label
    if kind == "empty-label":
        _write(np.zeros(data.shape), img.affine, label, np.uint8)
        return label
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not-nifti", "truncated", "nan", "2d", "5d", "shape", "empty-label"])
def test_validate_rejects_what_compare_rejects_naming_the_file(kind, tmp_path, capsys):
    """#19 item 7: each broken folder fails `ada config validate` and `ada compare` alike,
    exit 2, no traceback, naming the damaged file; the intact folder validates."""
    from ada_core.cli import main

    _need(SCT / "t2s.nii.gz")
    root = tmp_path / "bids"
    img, gm = nib.load(SCT / "t2s.nii.gz"), nib.load(SCT / "t2s_gmseg_manual.nii.gz")
    for sub in ("sub-01", "sub-02", "sub-03"):
        _write(np.asanyarray(img.dataobj), img.affine, root / sub / "anat" / f"{sub}_T2starw.nii.gz")
        _write(np.asanyarray(gm.dataobj), gm.affine, root / "derivatives/labels" / sub / "anat"
               / f"{sub}_T2starw_gmseg-manual.nii.gz", np.uint8)  # fmt: skip
    config = tmp_path / "exp.toml"
    config.write_text(f"""name = "broken"
output = "{tmp_path / 'runs'}"
attributors = ["none"]
[data]
name = "bids"
[data.params]
root = "{root}"
site_column = ""
cord_suffix = ""
[data.preprocess]
spacing = 0.5
size = [32, 32]
[data.split]
val_fraction = 0.34
[model]
name = "unet-paper"
[model.params]
width = 4
depth = 2
[train]
standard_epochs = 1
cycles = 1
ada_epochs = 1
robustness = false
""")
    code = main(["config", "validate", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3 labelled subjects, 27 slices" in out
    assert not (tmp_path / "runs").exists()  # validate writes nothing, not even a cache
    bad = _broken(kind, root / "sub-02/anat/sub-02_T2starw.nii.gz",
                  root / "derivatives/labels/sub-02/anat/sub-02_T2starw_gmseg-manual.nii.gz")
    messages = []
    for command in ("validate", "compare"):
        argv = ["config", "validate", str(config)] if command == "validate" else ["compare", str(config), "--quiet"]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (command, err)
        assert str(bad) in err and "Traceback" not in err, (command, err)
        messages.append(err.split(str(bad), 1)[1])
    assert messages[0] == messages[1]  # the same check, the same words
    if kind == "empty-label":
        assert "the GM label is all zero" in messages[0]
