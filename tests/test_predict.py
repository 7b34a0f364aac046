"""`ada predict` on real NIfTI: masks on each input's own grid, and a trained model's DSC.

References are independent of the code under test: nibabel reads the written files, and the
manual GM masks of ../shared/data are the truth.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ada_core.predict as predict
from ada_core.data import PreprocessConfig
from ada_core.predict import Checkpoint, predict_files
from conftest import SHARED_DATA
from studykit import ada_cli

nib = pytest.importorskip("nibabel")

GMDEV = SHARED_DATA / "gm-challenge-dev"
SCT = SHARED_DATA / "sct-testing-t2s"
SUBJECTS = ["sub-9418", "sub-9604", "sub-9709Ses1"]  # LAS float32, LPS int16, LAS 256x192


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real MRI test data not found at {path} (see ../shared/data/README.md)")
    return path


def _files(subject: str) -> tuple[Path, Path, Path]:
    root = _need(GMDEV)
    stem = f"{subject}_run-1_T2starw"
    labels = root / "derivatives" / "labels" / subject / "anat"
    return (root / subject / "anat" / f"{stem}.nii.gz", labels / f"{stem}_gmseg-manual.nii.gz",
            labels / f"{stem}_seg-manual.nii.gz")  # fmt: skip


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


class Oracle(nn.Module):
    """'Segments' an image that is a GM mask: min-max scaled, the mask's own values, so
    probability >= 0.5 exactly where the resampled mask is >= 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(50.0))

    def check_input_size(self, h: int, w: int) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x - 0.5)


@pytest.fixture
def oracle(monkeypatch):
    config = PreprocessConfig(normalize="minmax")  # the paper's 0.25 mm and 200 x 200

    def fake(run, branch=None, seed=None, **kw):
        return Checkpoint(Oracle(), config, {"label": "oracle", "seed": 0}, Path(run) / "best.pt")

    monkeypatch.setattr(predict, "load_run_checkpoint", fake)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_masks_land_on_each_inputs_own_grid_and_affine(subject, oracle, tmp_path):
    """A GM mask given as the image comes back as that mask, in the file's own orientation."""
    image, gm, cord = _files(subject)
    source = nib.load(gm)
    as_image = tmp_path / f"{subject}.nii.gz"  # the GM mask as an image, with its own header
    header = source.header.copy()
    header.set_data_dtype(np.float32)
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj, dtype=np.float32), None, header), as_image)
    # sub-9604's GM lies 25 mm from the image centre, outside a centred 50 mm crop: its cord
    # mask centres the crops, as in training.
    cords = [cord] if subject == "sub-9604" else []
    mask_path, prob_path = predict_files(tmp_path / "run", [as_image], tmp_path / "out",
                                         probabilities=True, cords=cords)  # fmt: skip
    written, reference = nib.load(mask_path), nib.load(as_image)
    assert written.shape == reference.shape == nib.load(image).shape
    np.testing.assert_allclose(written.affine, reference.affine, rtol=0, atol=1e-6)
    for form in ("qform", "sform"):
        got, code = getattr(written.header, f"get_{form}")(coded=True)
        want, want_code = getattr(reference.header, f"get_{form}")(coded=True)
        assert code == want_code and (want is None or np.allclose(got, want, atol=1e-6))
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(reference.affine)
    mask = np.asarray(written.dataobj)
    assert written.get_data_dtype() == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert _dice(mask > 0, np.asarray(source.dataobj) > 0.5) >= 0.95
    prob = np.asarray(nib.load(prob_path).dataobj)
    assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    np.testing.assert_array_equal(prob >= 0.5, mask > 0)


def test_far_grey_matter_is_found_without_a_cord_mask(monkeypatch, tmp_path):
    """With 24 mm crops, sub-9604's GM (25 mm from the image centre) is missed entirely by a
    centred crop, and found by the sliding window (alone or locating the crops) and by its
    cord mask."""
    config = PreprocessConfig(normalize="minmax", size=(96, 96))
    monkeypatch.setattr(predict, "load_run_checkpoint",
                        lambda run, *a, **k: Checkpoint(Oracle(), config, {}, Path(run)))  # fmt: skip
    _, gm, cord = _files("sub-9604")
    source = nib.load(gm)
    path = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj, dtype=np.float32), source.affine), path)
    truth = np.asarray(source.dataobj) > 0.5

    def dice(out: Path) -> float:
        return _dice(np.asarray(nib.load(out).dataobj) > 0, truth)

    (centred,) = predict_files(tmp_path / "run", [path], tmp_path / "centred", locate="centre")
    assert dice(centred) < 0.05
    for locate in ("located", "sliding"):
        (out,) = predict_files(tmp_path / "run", [path], tmp_path / locate, locate=locate)
        assert dice(out) >= 0.95, locate
    (on_cord,) = predict_files(tmp_path / "run", [path], tmp_path / "cord", cords=[cord],
                               locate="centre")  # fmt: skip
    assert dice(on_cord) >= 0.95


def test_input_errors_name_the_file(oracle, tmp_path):
    with pytest.raises(predict.InputError, match="nope.nii.gz: input file not found"):
        predict_files(tmp_path, [tmp_path / "nope.nii.gz"], tmp_path / "out")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(predict.InputError, match="bad.nii.gz: cannot read NIfTI"):
        predict_files(tmp_path, [bad], tmp_path / "out")
    other = tmp_path / "other.nii.gz"
    other.write_bytes(b"not a nifti")
    with pytest.raises(predict.InputError, match="1 cord masks for 2 inputs"):
        predict_files(tmp_path, [bad, other], tmp_path / "out", cords=[bad])
    (tmp_path / "x").mkdir()
    shutil.copy(bad, tmp_path / "x" / "bad.nii.gz")
    with pytest.raises(predict.InputError, match="share the case id 'bad'"):
        predict_files(tmp_path, [bad, tmp_path / "x" / "bad.nii.gz"], tmp_path / "out")


# --------------------------------------------------------------------------- a trained model

#: DSC floor of a model trained briefly (40 epochs) on the SCT volume, on that same volume.
#: Measured 0.61 (lr 3e-3) and 0.59 (lr 1e-2) on a CPU; 0.5 leaves room for torch's kernels.
#: A wrong geometry (a flip, a shift of half the cord) drops it far below.
DSC_FLOOR = 0.5


@pytest.fixture(scope="module")
def sct_run(tmp_path_factory):
    """A tiny study on the SCT volume in the SCGM challenge layout (two copies: one trains,
    one validates), run through the CLI; returns the run folder."""
    folder = _need(SCT)
    root = tmp_path_factory.mktemp("sct")
    data = root / "data"
    data.mkdir()
    for sc in ("01", "02"):
        shutil.copy(folder / "t2s.nii.gz", data / f"site1-sc{sc}-image.nii.gz")
        shutil.copy(folder / "t2s_gmseg_manual.nii.gz", data / f"site1-sc{sc}-mask-r1.nii.gz")
    from studykit import write_config

    config = {
        "name": "sct", "output": str(root),
        "data": {"name": "scgm", "params": {"root": str(data), "n_raters": 1},
                 "preprocess": {"spacing": 0.5, "size": [64, 64]},
                 "split": {"val_fraction": 0.5, "seed": 0}},
        "model": {"name": "unet-paper", "params": {"width": 8, "depth": 3, "dropout": 0.0}},
        "attributors": ["none"],
        "augment": {"enabled": False},
        "train": {"standard_epochs": 40, "cycles": 1, "ada_epochs": 1, "batch_size": 3, "lr": 3e-3,
                  "device": "cpu", "robustness": False},
    }  # fmt: skip
    path = write_config(config, root / "sct.toml")
    proc = ada_cli("train", str(path), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sct"


def test_a_briefly_trained_model_segments_its_own_subject(sct_run, tmp_path):
    """40 epochs on the 9 slices of the SCT volume: the mask predicted for that volume, read
    by nibabel, has the input's shape and affine and reaches DSC_FLOOR against the manual GM.
    (The floor is the measured DSC less a margin for run-to-run variation of torch's CPU
    kernels: the test checks that prediction undoes the geometry, not how well ADA learns.)"""
    image = SCT / "t2s.nii.gz"
    proc = ada_cli("predict", str(sct_run), "--branch", "none", "--input", str(image),
                   "--output", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (out,) = [Path(line) for line in proc.stdout.splitlines()]
    written, reference = nib.load(out), nib.load(image)
    assert written.shape == reference.shape
    np.testing.assert_allclose(written.affine, reference.affine, rtol=0, atol=1e-5)
    truth = np.asarray(nib.load(SCT / "t2s_gmseg_manual.nii.gz").dataobj) > 0.5
    pred = np.asarray(written.dataobj) > 0
    dice = _dice(pred, truth)
    # The engine's own validation DSC of the same checkpoint, on the crops of the same volume
    # (the validation copy): per-slice DSC on the volume's axial slices must agree with it.
    import json

    done = json.loads((sct_run / "seed-0" / "branches" / "none" / "done.json").read_text())
    engine = done["best"]["metrics"]["dsc_mean"] / 100
    # The engine centres its crops on the GM (this layout has no cord mask): given as --cord,
    # the GM centres predict's crops the same way, so the per-slice DSC must agree.
    proc = ada_cli("predict", str(sct_run), "--branch", "none", "--input", str(image),
                   "--cord", str(SCT / "t2s_gmseg_manual.nii.gz"), "--output", str(tmp_path / "gm"))
    assert proc.returncode == 0, proc.stderr
    on_gm = np.asarray(nib.load(tmp_path / "gm" / "t2s.nii.gz").dataobj) > 0
    per_slice = np.mean([_dice(on_gm[..., k], truth[..., k]) for k in range(truth.shape[2])])
    print(f"DSC on its own volume: {dice:.3f} (crops on the GM: per slice {per_slice:.3f}; "
          f"engine {engine:.3f})")
    assert dice >= DSC_FLOOR
    assert abs(per_slice - engine) <= 0.03


def test_predict_cli_errors_exit_2_without_traceback(sct_run, tmp_path):
    image = str(SCT / "t2s.nii.gz")
    res = ada_cli("predict", str(sct_run), "--input", image, "--output", str(tmp_path))
    assert res.returncode == 0, res.stderr  # the run's only branch is the default
    res = ada_cli("predict", str(sct_run), "--branch", "gradcm", "--input", image, "-o", str(tmp_path))
    assert res.returncode == 2 and "no branch 'gradcm'" in res.stderr and "Traceback" not in res.stderr
    res = ada_cli("predict", str(sct_run), "--branch", "none", "--seed", "7", "--input", image,
                  "-o", str(tmp_path))  # fmt: skip
    assert res.returncode == 2 and "has no seed 7; its seeds are [0]" in res.stderr
    res = ada_cli("predict", str(tmp_path), "--input", image, "-o", str(tmp_path))
    assert res.returncode == 2 and "no summary.json" in res.stderr


def test_load_model_rebuilds_the_network_without_the_config(sct_run, tmp_path):
    import ada_core

    moved = tmp_path / "elsewhere"
    shutil.copytree(sct_run, moved)
    for name in ("config.toml", "config.json"):
        (moved / name).unlink()  # the checkpoint's meta is enough
    model = ada_core.load_model(moved, branch="standard")
    assert type(model).name == "unet-paper" and not model.training
    selected = predict.load_run_checkpoint(moved, "standard").path
    state = torch.load(selected, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k])


# --------------------------------------------------------------------------- inputs as nnU-Net takes them


def _sct_copy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_need(SCT) / "t2s.nii.gz", path)
    return path


class Counting:
    """load_run_checkpoint replaced by the oracle, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, run, *a, **k):
        self.calls += 1
        return Checkpoint(Oracle(), PreprocessConfig(spacing=0.5, size=(32, 32), normalize="minmax"),
                          {}, Path(run))  # fmt: skip


@pytest.fixture
def counting(monkeypatch) -> Counting:
    loader = Counting()
    monkeypatch.setattr(predict, "load_run_checkpoint", loader)
    return loader


def test_a_folder_gives_every_case_with_its_id(counting, tmp_path):
    scans = tmp_path / "scans"
    _sct_copy(scans / "case1_0000.nii.gz")
    _sct_copy(scans / "sub-02_T2s.nii.gz")
    nib.save(nib.load(scans / "case1_0000.nii.gz"), str(scans / "plain.nii"))  # uncompressed
    (scans / "notes.txt").write_text("not an image")
    single = _sct_copy(tmp_path / "elsewhere" / "x_0000.nii.gz")
    written = predict_files("run", [scans, single], tmp_path / "out", probabilities=True)
    assert [p.name for p in written] == [
        "case1.nii.gz", "case1_gmprob.nii.gz", "plain.nii.gz", "plain_gmprob.nii.gz",
        "sub-02_T2s.nii.gz", "sub-02_T2s_gmprob.nii.gz", "x.nii.gz", "x_gmprob.nii.gz"]
    reference = nib.load(SCT / "t2s.nii.gz")
    for path in written:
        assert nib.load(path).shape == reference.shape
        np.testing.assert_allclose(nib.load(path).affine, reference.affine, atol=1e-6)
    assert counting.calls == 1


@pytest.mark.parametrize(
    "names, message",
    [(["a_0000.nii.gz", "a_0001.nii.gz"], r"case 'a' has channels \['0000', '0001'\].*_0000 file"),
     (["a_0001.nii.gz"], r"case 'a' has channels \['0001'\]"),
     (["a.nii.gz", "a_0000.nii.gz"], "inputs share the case id 'a'"),
     (["a.nii.gz", "a_gmprob_0000.nii.gz"], r"a_gmprob\.nii\.gz: both case 'a' and 'a_gmprob'")],
)
def test_cases_that_cannot_be_told_apart_are_refused_before_any_work(counting, tmp_path, names,
                                                                       message):  # fmt: skip
    for name in names:
        _sct_copy(tmp_path / "in" / name)
    with pytest.raises(predict.InputError, match=message):
        predict_files("run", [tmp_path / "in"], tmp_path / "out", probabilities=True)
    assert counting.calls == 0 and not (tmp_path / "out").exists()


def test_every_input_is_checked_before_the_model_loads_or_a_mask_is_written(counting, tmp_path):
    good = [_sct_copy(tmp_path / "in" / f"c{i}.nii.gz") for i in range(3)]
    broken = tmp_path / "in" / "c3.nii.gz"
    broken.write_bytes((tmp_path / "in" / "c0.nii.gz").read_bytes()[:300])  # a truncated gzip
    for inputs, message in (([*good, broken], r"c3\.nii\.gz: cannot read NIfTI"),
                            ([*good, tmp_path / "c9.nii.gz"], r"c9\.nii\.gz: input file not found")):
        with pytest.raises(predict.InputError, match=message):
            predict_files("run", inputs, tmp_path / "out")
        assert counting.calls == 0 and not (tmp_path / "out").exists()
    cord = tmp_path / "cord.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), cord)
    with pytest.raises(predict.InputError, match=r"cord\.nii\.gz: cord mask shape \(4, 4, 4\)"):
        predict_files("run", good, tmp_path / "out", cords=[*[SCT / "t2s_seg.nii.gz"] * 2, cord])
    assert counting.calls == 0 and not (tmp_path / "out").exists()


def test_a_result_never_overwrites_an_input(counting, tmp_path):
    scan = _sct_copy(tmp_path / "scans" / "a.nii.gz")
    before = scan.read_bytes()
    with pytest.raises(predict.InputError, match=r"a\.nii\.gz: the result of case 'a' would overwrite an input"):
        predict_files("run", [tmp_path / "scans"], tmp_path / "scans")
    assert scan.read_bytes() == before and counting.calls == 0
    (out,) = predict_files("run", [_sct_copy(tmp_path / "scans" / "b_0000.nii.gz")], tmp_path / "scans")
    assert out == tmp_path / "scans" / "b.nii.gz"  # beside its input, as nnU-Net may


def test_cord_masks_from_a_folder_by_case_id(counting, tmp_path):
    for name in ("p_0000.nii.gz", "q.nii.gz"):
        _sct_copy(tmp_path / "in" / name)
    cords = tmp_path / "cords"
    cords.mkdir()
    shutil.copy(SCT / "t2s_seg.nii.gz", cords / "p.nii.gz")
    shutil.copy(SCT / "t2s_seg.nii.gz", cords / "q_seg.nii.gz")
    written = predict_files("run", [tmp_path / "in"], tmp_path / "out", cords=[cords])
    assert [p.name for p in written] == ["p.nii.gz", "q.nii.gz"]
    (cords / "q_seg.nii.gz").unlink()
    with pytest.raises(predict.InputError, match=r"cords: no cord mask for case 'q'"):
        predict_files("run", [tmp_path / "in"], tmp_path / "out2", cords=[cords])


def test_a_link_at_an_output_path_is_replaced_never_written_through(counting, tmp_path):
    """#19 item 9: a symlink already in --output must not make predict write its target."""
    victim = tmp_path / "outside.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nii.gz").symlink_to(victim)
    (out / "a_gmprob.nii.gz").symlink_to(tmp_path / "missing-target.nii.gz")  # a dangling link
    written = predict_files("run", [_sct_copy(tmp_path / "in" / "a.nii.gz")], out, probabilities=True)
    assert victim.read_text() == "precious" and not (tmp_path / "missing-target.nii.gz").exists()
    for path in written:
        assert not path.is_symlink() and nib.load(path).shape == (49, 54, 9)
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "a_gmprob.nii.gz"]  # no temporaries


def test_an_unavailable_device_is_named_before_any_file_is_read(monkeypatch, counting, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    scan = _sct_copy(tmp_path / "a.nii.gz")
    for device in ("cuda", "cuda:1"):
        with pytest.raises(predict.InputError, match=rf"device '{device}' is unavailable: this "
                           "machine has no CUDA GPU.*--device cpu"):  # fmt: skip
            predict_files("run", [scan], tmp_path / "out", device=device)
    with pytest.raises(predict.InputError, match="'gpu' is not a device"):
        predict_files("run", [scan], tmp_path / "out", device="gpu")
    assert counting.calls == 0


# --------------------------------------------------------------------------- checkpoints outside the job


def _done_json(run: Path) -> Path:
    return run / "seed-0" / "branches" / "none" / "done.json"


def test_a_checkpoint_outside_the_job_folder_is_never_loaded(sct_run, tmp_path):
    """#19 item 9: done.json naming ../../outside.pt, or a best.pt that links outside."""
    import json

    run = tmp_path / "run"
    shutil.copytree(sct_run, run)
    outside = tmp_path / "outside.pt"
    shutil.copy(run / "seed-0" / "branches" / "none" / "best.pt", outside)
    done = json.loads(_done_json(run).read_text())
    done["selected"] = "../../outside.pt"
    _done_json(run).write_text(json.dumps(done))
    with pytest.raises(predict.DataError, match=r"done\.json is not a valid DoneRecord: field 'selected'"):
        predict.load_run_checkpoint(run, "none")
    res = ada_cli("predict", str(run), "--branch", "none", "-i", str(SCT / "t2s.nii.gz"),
                  "-o", str(tmp_path / "out"))  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr and "'selected'" in res.stderr
    shutil.copy(sct_run / "seed-0" / "branches" / "none" / "done.json", _done_json(run))
    selected = predict.load_run_checkpoint(run, "none").path
    selected.unlink()
    selected.symlink_to(outside)
    with pytest.raises(predict.DataError, match="a link to .*outside.pt, outside its job folder"):
        predict.load_run_checkpoint(run, "none")


def test_predict_on_a_missing_gpu_says_so(sct_run, tmp_path):
    """#19 item 10: the device is named as unavailable; the checkpoint is not blamed."""
    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    res = ada_cli("predict", str(sct_run), "-i", str(SCT / "t2s.nii.gz"), "-o", str(tmp_path),
                  "--device", device)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"device '{device}' is unavailable" in res.stderr and "checkpoint" not in res.stderr


# --------------------------------------------------------------------------- the help's examples


def test_the_help_examples_run_as_written(tiny_study, tmp_path):
    """Every example of `ada predict --help`, word for word, in a folder holding what they
    name: runs/demo (a real study with branch gradcam and seeds 0 and 1), scans/, cords/."""
    import shlex
    import subprocess
    import sys

    help_text = ada_cli("predict", "--help").stdout
    examples = [shlex.split(line.strip()) for line in help_text.split("examples:")[1].splitlines()
                if line.strip().startswith("ada predict")]  # fmt: skip
    assert len(examples) >= 3
    shutil.copytree(tiny_study[0], tmp_path / "runs" / "demo")
    for name in ("scans/sub-01_T2s.nii.gz", "scans/sub-02_0000.nii.gz", "a.nii.gz", "b_0000.nii.gz"):
        _sct_copy(tmp_path / name)
    (tmp_path / "cords").mkdir()
    for case in ("sub-01_T2s", "sub-02"):
        shutil.copy(SCT / "t2s_seg.nii.gz", tmp_path / "cords" / f"{case}.nii.gz")
    for words in examples:
        assert words[:2] == ["ada", "predict"]
        res = subprocess.run([sys.executable, "-m", "ada_core.cli", *words[1:]], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert res.returncode == 0, (words, res.stderr[-2000:])
        for line in res.stdout.splitlines():
            out = tmp_path / line
            assert nib.load(out).shape == (49, 54, 9), words
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == [
        "a.nii.gz", "a_gmprob.nii.gz", "b.nii.gz", "b_gmprob.nii.gz", "sub-01_T2s.nii.gz",
        "sub-02.nii.gz"]
