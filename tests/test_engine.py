"""Tests of the ADA engine: losses, checkpoints, one epoch, and a tiny compare through the CLI.

The end-to-end checks recompute what the engine reports with independent code: DSC by hand
from the saved best checkpoint, the robustness set by a brute-force loop over square
positions, ADA images from the training slices loaded again through the registry.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ada_core.augment import AugmentConfig
from ada_core.cli import main
from ada_core.config import ExperimentConfig, parse_config, to_toml
from ada_core.data import load_slices, split_slices
from ada_core.engine import run_experiment, standard_key
from ada_core.engine.checkpoint import load_checkpoint, save_checkpoint, write_json
from ada_core.engine.experiment import resolve_device
from ada_core.engine.loop import Runtime, train_epoch
from ada_core.engine.losses import bce_loss, make_loss, soft_dice_loss
from ada_core.errors import ConfigError, DataError
from ada_core.plugins import load_plugins
from ada_core.testing.models import TinySegModel

ROOT = Path(__file__).resolve().parents[1]
BRANCHES = ["gradcam", "vanilla", "random", "none", "none_twin"]


def tiny_config(output: Path, name: str = "tiny", **train) -> dict:
    """A compare that runs in seconds: 32 x 32 phantom slices, a 2-level U-Net of width 4."""
    return {
        "name": name,
        "output": str(output),
        "data": {
            "name": "phantom",
            "params": {
                "n_subjects": 5,
                "slices_per_subject": 3,
                "size": [64, 64],
                "spacing": 0.5,
                "sites": 2,
                "context_cue": True,
                "seed": 1,
            },
            "preprocess": {"spacing": 0.5, "size": [32, 32]},
            "split": {"val_fraction": 0.2, "seed": 0},
        },
        "model": {"name": "unet-paper", "params": {"width": 4, "depth": 2, "dropout": 0.1}},
        "attributors": [
            {"name": "gradcam"},
            {"name": "vanilla"},
            {"name": "random"},
            {"name": "none"},
            {"name": "none", "label": "none_twin"},
        ],
        "mask": {"name": "window", "params": {"size": 6}},
        "train": {
            "standard_epochs": 2,
            "cycles": 2,
            "ada_epochs": 2,
            "batch_size": 8,
            "lr": 3e-3,
            "eval_batch_size": 32,
            "robustness_size": 8,
            "seed": 0,
            "device": "cpu",
            **train,
        },  # the checks recompute in float32 on the CPU
    }


# --------------------------------------------------------------------------- units


def test_soft_dice_loss_matches_hand_computation():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    p = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3))]
    inter = p[0] + p[1]
    expected = 1 - (2 * inter + 1) / (sum(p) + 2 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    bce = (
        -sum(
            t * math.log(q) + (1 - t) * math.log(1 - q)
            for q, t in zip(p, [1, 1, 0, 0], strict=True)
        )
        / 4
    )
    assert bce_loss(logits, target).item() == pytest.approx(bce, rel=1e-5)
    assert make_loss("dice+bce")(logits, target).item() == pytest.approx(expected + bce, rel=1e-5)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ConfigError, match=r"train.loss = 'focal'.*'bce', 'dice', 'dice\+bce'"):
        make_loss("focal")
    with pytest.raises(ConfigError, match="train.loss"):
        parse_config({"train": {"loss": "focal"}})


def test_full_batch_epoch_equals_one_manual_step():
    torch.manual_seed(0)
    model = TinySegModel()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout2d):
            m.p = 0.0  # the reference cannot replay dropout masks of a permuted batch
    ref = copy.deepcopy(model)
    x = torch.randn(6, 1, 8, 8)
    y = (torch.rand(6, 1, 8, 8) > 0.7).float()
    # SGD: Adam's first step is lr * sign(grad), which turns float noise in the zero
    # gradients of conv biases before batch norm into full-size steps.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = train_epoch(
        model,
        opt,
        x,
        y,
        loss_fn=soft_dice_loss,
        batch_size=6,
        shuffle=torch.Generator().manual_seed(0),
        augmenter=None,
        runtime=Runtime(torch.device("cpu")),
    )
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref.train()
    ref_loss = soft_dice_loss(ref(x), y)  # batch-level loss: invariant to sample order
    ref_loss.backward()
    ref_opt.step()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_checkpoints_are_atomic_and_errors_name_the_file(tmp_path):
    path = tmp_path / "a" / "ck.pt"
    save_checkpoint(path, {"x": torch.arange(3)})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]  # no temporary left behind
    with pytest.raises(DataError, match=r"missing\.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"bad\.pt is unreadable"):
        load_checkpoint(tmp_path / "bad.pt")
    write_json(tmp_path / "n.json", {"v": float("nan"), "w": [1.0, float("inf")]})
    assert json.loads((tmp_path / "n.json").read_text()) == {"v": None, "w": [1.0, None]}


#: TrainConfig fields that change neither the standard phase nor a branch's training.
NEUTRAL_TRAIN = {
    "device",  # keyed by device *type* separately
    "eval_batch_size", "save_ada_images", "robustness", "robustness_size", "reuse_standard",
    "cycles",  # more cycles extend a branch's schedule unchanged
}  # fmt: skip
CHANGED = {"standard_epochs": 7, "batch_size": 3, "lr": 0.5, "loss": "bce", "seed": 9,
           "amp": False, "channels_last": False, "ada_epochs": 9,
           "augment_ada_images": False, "control_steps": "matched"}  # fmt: skip


def test_every_train_field_is_classified_for_the_keys():
    from ada_core.config import TrainConfig
    from ada_core.engine.experiment import BRANCH_TRAIN_FIELDS, STANDARD_TRAIN_FIELDS

    fields = set(TrainConfig.model_fields)
    classified = STANDARD_TRAIN_FIELDS | BRANCH_TRAIN_FIELDS | NEUTRAL_TRAIN
    assert fields == classified, f"classify the new TrainConfig fields: {fields ^ classified}"
    assert not STANDARD_TRAIN_FIELDS & BRANCH_TRAIN_FIELDS


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_standard_and_branch_keys_follow_their_fields(field):
    from ada_core.engine.experiment import STANDARD_TRAIN_FIELDS, branch_key

    base = ExperimentConfig(train={"device": "cpu"})
    spec = base.attributors[0]
    changed = base.model_copy(update={"train": base.train.model_copy(update={field: CHANGED[field]})})
    std, std2 = standard_key(base, "fp"), standard_key(changed, "fp")
    assert (std != std2) == (field in STANDARD_TRAIN_FIELDS)
    # A branch depends on its standard phase and on its own fields: any of these changes it.
    assert branch_key(base, spec, std) != branch_key(changed, spec, std2)


def test_keys_ignore_neutral_fields_and_follow_data_model_augment():
    from ada_core.engine.experiment import branch_key

    base = ExperimentConfig(train={"device": "cpu"})
    key = standard_key(base, "fp")
    neutral = {"eval_batch_size": 3, "save_ada_images": False, "robustness": False,
               "robustness_size": 4, "reuse_standard": False, "cycles": 2}  # fmt: skip
    same = base.model_copy(update={"train": base.train.model_copy(update=neutral)})
    assert standard_key(same, "fp") == key
    assert branch_key(same, base.attributors[0], key) == branch_key(base, base.attributors[0], key)
    cache_off = ExperimentConfig(train={"device": "cpu"}, data={"preprocess": {"cache": False}})
    assert standard_key(cache_off, "fp") == key
    assert standard_key(base, "other data") != key
    for update in (
        {"augment": AugmentConfig(rotation_deg=1.0)},
        {"model": base.model.model_copy(update={"params": {"width": 8}})},
    ):
        assert standard_key(base.model_copy(update=update), "fp") != key
    other_mask = base.model_copy(update={"mask": base.mask.model_copy(update={"params": {"size": 8}})})
    assert branch_key(other_mask, base.attributors[0], key) != branch_key(
        base, base.attributors[0], key
    )


def test_bad_device_and_mode_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.device = 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    config = parse_config(tiny_config(tmp_path))
    with pytest.raises(ConfigError, match="mode must be 'train' or 'compare', got 'fit'"):
        run_experiment(config, load_plugins(), mode="fit")
    with pytest.raises(
        ConfigError, match=r"attributors\[0\].name = 'gradcm'.*Did you mean 'gradcam'"
    ):
        run_experiment(
            parse_config({**tiny_config(tmp_path), "attributors": ["gradcm"]}),
            load_plugins(),
            mode="train",
        )


def test_no_validation_slices_is_a_data_error(tmp_path):
    data = tiny_config(tmp_path)
    data["data"]["split"]["val_fraction"] = 0.0
    with pytest.raises(DataError, match="0 validation slices"):
        run_experiment(parse_config(data), load_plugins(), mode="train", quiet=True)


# --------------------------------------------------------------------------- end to end


def _dsc_by_hand(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    tp = (pred * target).flatten(1).sum(1)
    fp = (pred * (1 - target)).flatten(1).sum(1)
    fn = ((1 - pred) * target).flatten(1).sum(1)
    return 200 * tp / (2 * tp + fp + fn)


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg_path = out / "tiny.toml"
    cfg_path.write_text(to_toml(parse_config(tiny_config(out))))
    proc = subprocess.run(
        [sys.executable, "-m", "ada_core.cli", "compare", str(cfg_path), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "tiny", proc


def test_compare_writes_the_run_folder(compare_run):
    run, proc = compare_run
    assert "Table 3" in proc.stdout and "Table 4" in proc.stdout
    for rel in [
        "config.toml",
        "config.json",
        "summary.json",
        "summary.txt",
        "analysis/iou.json",
        "analysis/samples.png",
        "analysis/convergence.png",
        "analysis/robustness_positions.png",
        "standard/metrics.jsonl",
        "standard/best.pt",
        "standard/final.pt",
        "standard/key.json",
    ]:
        assert (run / rel).is_file(), rel
    for label in BRANCHES:
        for rel in ["metrics.jsonl", "best.pt", "last.pt", "start.json"]:
            assert (run / "branches" / label / rel).is_file(), (label, rel)
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["branches"]) == BRANCHES
    iou = json.loads((run / "analysis/iou.json").read_text())
    assert iou["names"] == ["gradcam", "vanilla", "random"]
    assert [iou["matrix"][i][i] for i in range(3)] == [1.0, 1.0, 1.0]
    assert "Convergence" in proc.stdout


def test_html_report_embeds_tables_and_figures(compare_run, capsys):
    run, _ = compare_run
    page = (run / "report.html").read_text()
    assert "Table 3: validation" in page and "Table 4: robustness" in page
    for png in ("convergence.png", "iou.png", "samples.png", "robustness_positions.png"):
        assert f'alt="{png}" src="data:image/png;base64,' in page, png
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()
    assert main(["report", str(run / "standard")]) == 2
    assert "no summary.json, so not a finished run folder" in capsys.readouterr().err


def test_convergence_recomputed_from_the_epoch_logs(compare_run):
    run, _ = compare_run
    conv = json.loads((run / "summary.json").read_text())["convergence"]
    curves = {
        b: [
            json.loads(x)["metrics"]["dsc_mean"]
            for x in (run / "branches" / b / "metrics.jsonl").read_text().splitlines()
        ]
        for b in BRANCHES
    }
    target = 0.95 * max(max(c) for c in curves.values())
    assert math.isclose(conv["target"], target)
    for b, c in curves.items():
        first = next((i + 1 for i, v in enumerate(c) if v >= target), None)
        assert conv["branches"][b]["epochs_to_target"] == first
        assert math.isclose(conv["branches"][b]["mean_dsc"], sum(c) / len(c))


def test_epochs_are_counted_per_phase(compare_run):
    run, _ = compare_run
    std = [json.loads(x) for x in (run / "standard/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in std] == [1, 2] and {r["phase"] for r in std} == {"standard"}
    for label in BRANCHES:
        rows = [
            json.loads(x)
            for x in (run / "branches" / label / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # cycles x ada_epochs
        assert [r["cycle"] for r in rows] == [1, 1, 2, 2]
        n_train = rows[0]["train_images"]
        doubled = label not in ("none", "none_twin")  # conventional + ADA images
        assert all(r["train_images"] == n_train for r in rows)
        for r in rows:
            assert set(r) >= {
                "phase",
                "branch",
                "cycle",
                "epoch",
                "loss",
                "metrics",
                "seconds",
                "images_per_s",
            }
            assert r["branch"] == label and r["metrics"]["dsc_mean"] is not None
        assert (rows[0]["phase"] == "ada") == doubled
    none = [
        json.loads(x)["train_images"]
        for x in (run / "branches/none/metrics.jsonl").read_text().splitlines()
    ]
    ada = [
        json.loads(x)["train_images"]
        for x in (run / "branches/gradcam/metrics.jsonl").read_text().splitlines()
    ]
    assert ada[0] == 2 * none[0]


def test_every_branch_starts_from_the_standard_phase_state(compare_run):
    run, _ = compare_run
    final = torch.load(run / "standard/final.pt", weights_only=False)
    h = hashlib.sha256()
    for k, v in final["model"].items():
        h.update(k.encode())
        h.update(v.cpu().contiguous().numpy().tobytes())
    starts = [json.loads((run / "branches" / b / "start.json").read_text()) for b in BRANCHES]
    assert {s["model"] for s in starts} == {h.hexdigest()}
    assert len({s["optimizer"] for s in starts}) == 1 and len({s["rng"] for s in starts}) == 1
    # Behaviour: two identical controls from the same weights, optimizer and RNG state train
    # identically, epoch by epoch.
    a = [json.loads(x) for x in (run / "branches/none/metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (run / "branches/none_twin/metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["metrics"] for r in a] == [r["metrics"] for r in b]


def _training_slices(run: Path):
    config = ExperimentConfig.model_validate(json.loads((run / "config.json").read_text()))
    reg = load_plugins()
    slices = load_slices(reg.build("dataset", config.data), config.data.preprocess)
    return config, reg, *split_slices(slices, config.data.split)


def test_ada_images_are_originals_times_keep_masks(compare_run):
    run, _ = compare_run
    config, _, train, _ = _training_slices(run)
    z = config.mask.params["size"]
    for label in ["gradcam", "vanilla", "random"]:
        first = torch.load(run / "branches" / label / "cycle1.pt", weights_only=False)
        keep = first["keep"].float()
        assert keep.shape == train.images.shape
        torch.testing.assert_close(first["ada_images"], train.images * keep, atol=0, rtol=0)
        erased = (keep == 0).flatten(1).sum(1)
        assert bool((erased <= z * z).all()) and bool((erased > 0).any())
        assert not bool(((keep == 0) & (train.masks == 1)).any())  # ground truth is never erased


def test_summary_numbers_equal_recomputation_from_best_checkpoints(compare_run):
    run, _ = compare_run
    config, reg, _, val = _training_slices(run)
    summary = json.loads((run / "summary.json").read_text())
    z = summary["robustness_size"]
    h, w = val.images.shape[-2:]
    rows = {"standard": summary["standard"], **summary["branches"]}
    positions = json.loads((run / "analysis/robustness_positions.json").read_text())
    assert positions["size"] == z and set(positions["dsc_by_position"]) == set(rows)
    for label, row in rows.items():
        model = reg.build("model", config.model)
        state = torch.load(run / row["checkpoint"], weights_only=False)
        model.load_state_dict(state["model"])
        model.eval()
        with torch.no_grad():
            pred = (model(val.images) > 0).float()
            assert state["epoch"] == row["best_epoch"]
            dsc = _dsc_by_hand(pred, val.masks)
            assert row["validation"]["dsc_mean"] == pytest.approx(dsc.mean().item(), abs=1e-4)
            occluded = []
            for i in range(len(val)):  # brute-force Algorithm 2
                for r in range(0, h, z):
                    for c in range(0, w, z):
                        img = val.images[i].clone()
                        img[:, r : r + z, c : c + z] = 0
                        occluded.append((img, val.masks[i]))
            imgs = torch.stack([o[0] for o in occluded])
            masks = torch.stack([o[1] for o in occluded])
            rob = _dsc_by_hand((model(imgs) > 0).float(), masks)
        assert row["robustness"]["dsc_mean"] == pytest.approx(rob.mean().item(), abs=1e-4)
        grid = rob.reshape(len(val), math.ceil(h / z), math.ceil(w / z)).double().nanmean(0)
        logged = torch.tensor(  # JSON null = no defined DSC at that position
            [[math.nan if v is None else v for v in r] for r in positions["dsc_by_position"][label]],
            dtype=torch.float64,
        )
        torch.testing.assert_close(logged, grid, atol=1e-4, rtol=0, equal_nan=True)
        assert row["robustness"]["dsc_n"] == len(val) * math.ceil(h / z) * math.ceil(w / z)
    # The best epoch is the maximum of the logged validation DSC.
    for label in BRANCHES:
        rows_ = [
            json.loads(x)
            for x in (run / "branches" / label / "metrics.jsonl").read_text().splitlines()
        ]
        best = max(rows_, key=lambda r: r["metrics"]["dsc_mean"])
        assert summary["branches"][label]["best_epoch"] == best["epoch"]


def test_train_reuses_an_unchanged_standard_phase(compare_run, capsys):
    run, _ = compare_run
    data = tiny_config(run.parent)
    data["train"]["cycles"] = 1
    data["attributors"] = ["none"]
    before = (run / "standard/final.pt").stat().st_mtime_ns
    run_experiment(parse_config(data), load_plugins(), mode="train", quiet=True)
    assert "reusing the finished phase" in capsys.readouterr().out
    assert (run / "standard/final.pt").stat().st_mtime_ns == before
    rows = (run / "branches/none/metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # 1 cycle x 2 epochs
    assert list(json.loads((run / "summary.json").read_text())["branches"]) == ["none"]


@pytest.mark.parametrize(
    ("method", "cycles"),
    # random: the resumed run must continue the attributor's random stream (its state is
    # checkpointed), or cycle 3 erases other windows than the uninterrupted run's.
    [("gradcam", 2), ("random", 3)],
)
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(
    tmp_path, monkeypatch, method, cycles
):
    import ada_core.engine.phases as phases

    def config(name):
        data = tiny_config(
            tmp_path, name, standard_epochs=2, cycles=cycles, ada_epochs=2, robustness=False
        )
        data["attributors"] = [method]
        return parse_config(data)

    run_experiment(config("full"), load_plugins(), mode="train", quiet=True)
    real, calls = phases.train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # standard 2 epochs, then branch epochs 1-3: stop inside cycle 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(phases, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config("cut"), load_plugins(), mode="train", quiet=True)
    monkeypatch.setattr(phases, "train_epoch", real)
    assert len((tmp_path / f"cut/branches/{method}/metrics.jsonl").read_text().splitlines()) == 3
    run_experiment(config("cut"), load_plugins(), mode="train", quiet=True, resume=True)
    full = torch.load(tmp_path / f"full/branches/{method}/last.pt", weights_only=False)
    cut = torch.load(tmp_path / f"cut/branches/{method}/last.pt", weights_only=False)
    for k, v in full["model"].items():
        assert torch.equal(v, cut["model"][k]), k
    def rows(name):
        path = tmp_path / name / f"branches/{method}/metrics.jsonl"
        return [json.loads(x)["loss"] for x in path.read_text().splitlines()]

    assert rows("full") == rows("cut") and len(rows("cut")) == 2 * cycles


def test_matched_control_trains_as_many_images_as_an_ada_branch(tmp_path):
    data = tiny_config(
        tmp_path, "matched", standard_epochs=1, cycles=1, ada_epochs=1, robustness=False
    )
    data["attributors"] = ["none", "vanilla"]
    data["train"]["control_steps"] = "matched"
    run = run_experiment(parse_config(data), load_plugins(), mode="compare", quiet=True)
    seen = {
        b: json.loads((run / "branches" / b / "metrics.jsonl").read_text().splitlines()[0])
        for b in ("none", "vanilla")
    }
    n = json.loads((run / "summary.json").read_text())["train_slices"]
    assert seen["none"]["train_images"] == seen["vanilla"]["train_images"] == 2 * n


def test_resume_after_the_standard_phase_changed_retrains_the_branch(tmp_path, capsys):
    def config(lr):
        data = tiny_config(tmp_path, "stale", standard_epochs=1, cycles=1, ada_epochs=1,
                           robustness=False, lr=lr)  # fmt: skip
        data["attributors"] = ["vanilla"]
        return parse_config(data)

    run = run_experiment(config(0.01), load_plugins(), mode="compare", quiet=True)
    first = (run / "branches/vanilla/metrics.jsonl").read_text()
    run_experiment(config(0.02), load_plugins(), mode="compare", quiet=True, resume=True)
    assert "training it afresh" in capsys.readouterr().out
    assert (run / "branches/vanilla/metrics.jsonl").read_text() != first
    # start.json records the weights the branch really started from: the new final.pt.
    final = torch.load(run / "standard/final.pt", weights_only=False)
    from ada_core.engine.checkpoint import tensor_digest

    start = json.loads((run / "branches/vanilla/start.json").read_text())
    assert start["model"] == tensor_digest(final["model"])


def test_extra_evaluation_sets_are_scored_at_every_best_checkpoint(tmp_path):
    data = tiny_config(tmp_path, "extra", standard_epochs=2, cycles=1, ada_epochs=1,
                       robustness=False)  # fmt: skip
    data["attributors"] = ["vanilla", "none"]
    no_cue = {**data["data"], "params": {**data["data"]["params"], "context_cue": False}}
    data["evaluate"] = [{**no_cue, "label": "no_cue", "part": "val"}]
    run = run_experiment(parse_config(data), load_plugins(), mode="compare", quiet=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluate"] == ["no_cue"]
    assert "Extra evaluation 'no_cue'" in (run / "summary.txt").read_text()
    # Recompute by hand: the cue-free phantom's validation persons, each best checkpoint.
    config = ExperimentConfig.model_validate(json.loads((run / "config.json").read_text()))
    reg = load_plugins()
    spec = config.evaluate[0]
    _, val = split_slices(load_slices(reg.build("dataset", spec), spec.preprocess), spec.split)
    for row in [summary["standard"], *summary["branches"].values()]:
        model = reg.build("model", config.model)
        model.load_state_dict(torch.load(run / row["checkpoint"], weights_only=False)["model"])
        model.eval()
        with torch.no_grad():
            dsc = _dsc_by_hand((model(val.images) > 0).float(), val.masks)
        expected = dsc[~dsc.isnan()].mean().item()
        assert row["evaluate"]["no_cue"]["dsc_mean"] == pytest.approx(expected, abs=1e-4)


def test_bad_evaluation_set_fails_before_any_training(tmp_path):
    data = tiny_config(tmp_path, "badeval")
    data["evaluate"] = [{"name": "phantm", "label": "x"}]
    with pytest.raises(ConfigError, match=r"evaluate\[0\]\.name = 'phantm'.*Did you mean 'phantom'"):
        run_experiment(parse_config(data), load_plugins(), mode="compare", quiet=True)
    assert not (tmp_path / "badeval" / "standard").exists()
    data["evaluate"] = [{"name": "phantom", "label": "x"}, {"name": "phantom", "label": "x"}]
    with pytest.raises(ConfigError, match="evaluation set labels must be unique"):
        parse_config(data)
