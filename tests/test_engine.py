"""Tests of the ADA engine: losses, keys, the one phase loop, and a tiny compare.

The end-to-end checks recompute what the engine reports with independent code: DSC by hand
from the selected checkpoint, the robustness set by a brute-force loop over square
positions, ADA images and first-cycle keep masks from the training slices loaded again through
the registry and a fresh attributor.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from scipy import ndimage

from studykit import metrics_rows, run_config, tiny_config
from studykit import load_pt as load_checkpoint

from ada_core.config import ExperimentConfig, parse_config
from ada_core.data import load_slices
from ada_core.splits import fold_slices, plan_folds, split_slices
from ada_core.engine import build_plan, run_study
from ada_core.engine.jobs import Replicate, plan_jobs
from ada_core.engine.loop import Runtime, train_epoch
from ada_core.engine.losses import bce_loss, make_loss, soft_dice_loss
from ada_core.engine.plan import resolve_device
from ada_core.errors import ConfigError
from ada_core.fieldtags import untagged_fields
from ada_core.masks import erased_iou_matrix
from ada_core.plugins import load_plugins
from ada_core.testing.models import TinySegModel

BRANCHES = ["gradcam", "vanilla", "random", "none", "none_twin"]
SEEDS = [0, 1]  # of the shared tiny study (conftest.tiny_study)


# --------------------------------------------------------------------------- units


def test_soft_dice_loss_matches_hand_computation():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    p = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3))]
    inter = p[0] + p[1]
    expected = 1 - (2 * inter + 1) / (sum(p) + 2 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    bce = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for q, t in zip(p, [1, 1, 0, 0])) / 4
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
    loss = train_epoch(model, opt, x, y, loss_fn=soft_dice_loss, batch_size=6,
                       shuffle=torch.Generator().manual_seed(0), augmenter=None,
                       runtime=Runtime(torch.device("cpu")))  # fmt: skip
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref.train()
    ref_loss = soft_dice_loss(ref(x), y)  # batch-level loss: invariant to sample order
    ref_loss.backward()
    ref_opt.step()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- keys


def test_every_config_field_says_which_results_it_changes():
    assert untagged_fields(ExperimentConfig) == []


def _keys(data: dict) -> dict[str, str]:
    plan = build_plan(parse_config(data), load_plugins())
    jobs = plan_jobs(plan, [Replicate("", 0, ("a",), ("b",))], "fingerprint")
    keys = {j.label: j.key for j in jobs}
    keys["eval"] = jobs[1].eval_key(plan)
    return keys


#: (dotted key, new value, changes the standard phase, changes the ADA branches)
CHANGES = [
    ("train.standard_epochs", 7, True, True),
    ("train.batch_size", 3, True, True),
    ("train.lr", 0.5, True, True),
    ("train.loss", "bce", True, True),
    ("train.checkpoint", "last", True, True),
    ("train.threads", 2, True, True),  # CPU sums split otherwise (the tests' configs: 1)
    ("augment.rotation_deg", 1.0, True, True),
    ("model.params.width", 8, True, True),
    ("data.params.seed", 3, True, True),
    ("train.cycles", 1, False, True),  # fewer cycles: other results (issue 12)
    ("train.ada_epochs", 3, False, True),
    ("train.augment_ada_images", False, False, True),
    ("mask.params.size", 4, False, True),
    ("train.robustness_size", 4, False, False),
    ("train.eval_batch_size", 3, False, False),
    ("data.preprocess.cache", False, False, False),
    ("train.reuse_standard", False, False, False),
]


@pytest.mark.parametrize(("key", "value", "standard", "branch"), CHANGES)
def test_keys_follow_the_fields_that_change_results(tmp_path, key, value, standard, branch):
    base = tiny_config(tmp_path, attributors=["vanilla", "none"])
    changed = copy.deepcopy(base)
    node = changed
    *head, last = key.split(".")
    for part in head:
        node = node.setdefault(part, {})
    node[last] = value
    a, b = _keys(base), _keys(changed)
    assert (a["standard"] != b["standard"]) == standard
    assert (a["vanilla"] != b["vanilla"]) == branch
    evaluated = key in ("train.robustness_size",)
    assert (a["eval"] != b["eval"]) == (standard or branch or evaluated)
    # The keep-training control depends on neither the mask builder nor ADA settings.
    assert (a["none"] != b["none"]) == (standard or key in ("train.cycles", "train.ada_epochs"))


def test_bad_device_mode_and_names_raise_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="train.device = 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    config = parse_config(tiny_config(tmp_path))
    with pytest.raises(ConfigError, match="mode must be 'train' or 'compare', got 'fit'"):
        build_plan(config, load_plugins(), mode="fit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"attributors\[0\].name = 'gradcm'.*Did you mean 'gradcam'"):
        run_study(parse_config(tiny_config(tmp_path, attributors=["gradcm"])), load_plugins())
    assert not (tmp_path / "tiny").exists()


def test_no_validation_slices_is_a_data_error(tmp_path):
    data = tiny_config(tmp_path)
    data["data"]["split"]["val_fraction"] = 0.0
    with pytest.raises(ConfigError, match="data.split.val_fraction"):
        run_study(parse_config(data), load_plugins(), quiet=True)


# --------------------------------------------------------------------------- end to end


def _dsc_by_hand(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    tp = (pred * target).flatten(1).sum(1)
    fp = (pred * (1 - target)).flatten(1).sum(1)
    fn = ((1 - pred) * target).flatten(1).sum(1)
    return 200 * tp / (2 * tp + fp + fn)


@pytest.fixture
def compare_run(tiny_study):
    return tiny_study


def _slices(run: Path):
    """(config, registry, train, val, test) loaded again through the registry and the split."""
    config = run_config(run)
    reg = load_plugins()
    slices = load_slices(reg.build("dataset", config.data), config.data.preprocess)
    (fold,) = plan_folds(slices.group, slices.site, config.data.split, subjects=slices.subject)
    return config, reg, *fold_slices(slices, fold)


def test_compare_writes_a_folder_per_seed_and_the_study_results(compare_run):
    run, proc = compare_run
    assert "Verdict" in proc.stdout and "Primary paired differences" in proc.stdout
    for rel in ["config.toml", "config.json", "study.json", "results.csv", "summary.json",
                "summary.txt", "report.html"]:  # fmt: skip
        assert (run / rel).is_file(), rel
    for seed in SEEDS:
        std = run / f"seed-{seed}" / "standard"
        for rel in ["metrics.jsonl", "best.pt", "last.pt", "key.json", "done.json"]:
            assert (std / rel).is_file(), (seed, rel)
        for label in BRANCHES:
            for rel in ["metrics.jsonl", "best.pt", "last.pt", "start.json", "done.json"]:
                assert (run / f"seed-{seed}" / "branches" / label / rel).is_file(), (seed, label, rel)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["schema_version"] == 2 and summary["complete"]
    assert [b["label"] for b in summary["branches"]] == ["standard", *BRANCHES]
    assert summary["iou"]["names"] == ["gradcam", "vanilla", "random"]
    assert [summary["iou"]["matrix"][i][i] for i in range(3)] == [1.0, 1.0, 1.0]


def test_epochs_are_counted_per_phase(compare_run):
    run, _ = compare_run
    std = metrics_rows(run / "seed-0" / "standard")
    assert [r["epoch"] for r in std] == [1, 2] and {r["phase"] for r in std} == {"standard"}
    n_train = None
    for label in BRANCHES:
        rows = metrics_rows(run / "seed-0" / "branches" / label)
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # cycles x ada_epochs
        assert [r["cycle"] for r in rows] == [1, 1, 2, 2]
        assert all(r["branch"] == label and r["metrics"]["dsc_mean"] is not None for r in rows)
        ada = label in ("gradcam", "vanilla", "random")
        assert rows[0]["phase"] == ("ada" if ada else "control")
        if not ada:
            n_train = rows[0]["train_images"]
        else:
            assert rows[0]["train_images"] % 2 == 0  # conventional + ADA images
    assert metrics_rows(run / "seed-0" / "branches" / "gradcam")[0]["train_images"] == 2 * n_train


def test_every_branch_starts_from_its_seeds_standard_phase(compare_run):
    from ada_core.engine.state import tensor_digest

    run, _ = compare_run
    digests = set()
    for seed in SEEDS:
        final = load_checkpoint(run / f"seed-{seed}" / "standard" / "last.pt")
        starts = [json.loads((run / f"seed-{seed}" / "branches" / b / "start.json").read_text())
                  for b in BRANCHES]  # fmt: skip
        assert {s["model"] for s in starts} == {tensor_digest(final["model"])}
        assert len({s["optimizer"] for s in starts}) == 1 and len({s["rng"] for s in starts}) == 1
        digests.add(tensor_digest(final["model"]))
        # Two identical controls from the same state train identically, epoch by epoch.
        a = metrics_rows(run / f"seed-{seed}" / "branches" / "none")
        b = metrics_rows(run / f"seed-{seed}" / "branches" / "none_twin")
        assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert len(digests) == len(SEEDS)  # each seed its own standard phase


def test_ada_images_are_originals_times_keep_masks(compare_run):
    run, _ = compare_run
    config, _, train, _, _ = _slices(run)
    z = config.mask.params["size"]
    for label in ["gradcam", "vanilla", "random"]:
        first = load_checkpoint(run / "seed-0" / "branches" / label / "cycle1.pt")
        keep = first["keep"].float()
        torch.testing.assert_close(first["ada_images"], train.images * keep, atol=0, rtol=0)
        erased = (keep == 0).flatten(1).sum(1)
        assert bool((erased <= z * z).all()) and bool((erased > 0).any())
        assert not bool(((keep == 0) & (train.masks == 1)).any())  # ground truth never erased


def test_first_cycle_keep_masks_are_the_ones_the_iou_uses_and_recomputable(compare_run):
    """Cycle 1 attributes through the same path as every cycle: a fresh attributor on the
    standard phase's final weights gives bit-identical keep masks, and the IoU is theirs."""
    run, _ = compare_run
    config, reg, train, _, _ = _slices(run)
    mats = []
    keeps = {}
    for seed in SEEDS:
        model = reg.build("model", config.model)
        model.load_state_dict(load_checkpoint(run / f"seed-{seed}" / "standard" / "last.pt")["model"])
        mask = reg.build("mask", config.mask)
        keeps = {}
        for label in ["gradcam", "vanilla"]:
            attributor = reg.build("attributor", next(a for a in config.attributors if a.key == label))
            recomputed = torch.cat([
                mask.build(attributor.attribute(model, train.images[s:s + 32], train.masks[s:s + 32]),
                           train.masks[s:s + 32])
                for s in range(0, len(train), 32)
            ])  # fmt: skip
            saved = load_checkpoint(run / f"seed-{seed}" / "branches" / label / "cycle1.pt")["keep"]
            assert torch.equal(saved, recomputed.bool()), (seed, label)
            keeps[label] = saved.float()
        keeps["random"] = load_checkpoint(run / f"seed-{seed}" / "branches/random/cycle1.pt")["keep"].float()
        mats.append(erased_iou_matrix(keeps)[1].double())
    iou = json.loads((run / "summary.json").read_text())["iou"]
    torch.testing.assert_close(torch.tensor(iou["matrix"], dtype=torch.float64),
                               torch.stack(mats).mean(0), atol=1e-9, rtol=0)  # fmt: skip


def test_scored_numbers_equal_recomputation_from_the_selected_checkpoints(compare_run):
    run, _ = compare_run
    config, reg, _, val, test = _slices(run)
    assert len(test) and not set(test.group) & set(val.group)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["report_set"] == "test"
    z = summary["evaluation"]["robustness_size"]
    h, w = test.images.shape[-2:]
    for job in summary["jobs"]:
        if job["seed"] != 0:
            continue
        model = reg.build("model", config.model)
        state = load_checkpoint(run / job["path"] / job["selected"])
        model.load_state_dict(state["model"])
        model.eval()
        scored = json.loads((run / job["eval_path"] / "summary.json").read_text())
        with torch.no_grad():
            dsc = _dsc_by_hand((model(val.images) > 0).float(), val.masks)
            assert state["epoch"] == job["best_epoch"]
            assert scored["sets"]["val"]["dsc_mean"] == pytest.approx(dsc.mean().item(), abs=1e-4)
            clean = _dsc_by_hand((model(test.images) > 0).float(), test.masks)
            assert scored["sets"]["test"]["dsc_mean"] == pytest.approx(clean.mean().item(), abs=1e-4)
            occluded = []
            for i in range(len(test)):  # brute-force Algorithm 2, on the held-out part
                for r in range(0, h, z):
                    for c in range(0, w, z):
                        img = test.images[i].clone()
                        img[:, r : r + z, c : c + z] = 0
                        occluded.append((img, test.masks[i]))
            rob = _dsc_by_hand((model(torch.stack([o[0] for o in occluded])) > 0).float(),
                               torch.stack([o[1] for o in occluded]))  # fmt: skip
        per_slice = rob.reshape(len(test), -1).double().nanmean(1)  # a slice's mean over copies
        assert scored["sets"]["robustness"]["dsc_mean"] == pytest.approx(
            per_slice.nanmean().item(), abs=1e-4)  # fmt: skip
        # robustness_near and the context probe, with scipy's exact distance to the ground truth
        margin = summary["evaluation"]["robustness_margin_mm"]
        spacing = test.spacing[0].double().tolist()
        near_drop, probes = [], []
        copies = rob.reshape(len(test), math.ceil(h / z), math.ceil(w / z)).double()
        for i in range(len(test)):
            dist = ndimage.distance_transform_edt(test.masks[i, 0].numpy() == 0, sampling=spacing)
            near = torch.from_numpy(dist <= margin + 1e-9)
            drops = [copies[i, r // z, c // z] - clean[i] for r in range(0, h, z) for c in range(0, w, z)
                     if near[r : r + z, c : c + z].any()]  # fmt: skip
            drops = torch.stack(drops)
            near_drop.append(drops[~drops.isnan()].mean())
            keep_ctx = torch.from_numpy(dist <= summary["evaluation"]["context_margin_mm"] + 1e-9)
            probes.append(torch.where(keep_ctx, test.images[i, 0], torch.zeros(())))
        with torch.no_grad():
            ctx = _dsc_by_hand((model(torch.stack(probes)[:, None]) > 0).float(), test.masks)
        near_drop = torch.stack(near_drop)
        assert scored["sets"]["robustness_near"]["dsc_mean"] == pytest.approx(
            near_drop[~near_drop.isnan()].mean().item(), abs=1e-4)  # fmt: skip
        assert scored["sets"]["context"]["dsc_mean"] == pytest.approx(
            ctx[~ctx.isnan()].mean().item(), abs=1e-4)  # fmt: skip
        grid = rob.reshape(len(test), math.ceil(h / z), math.ceil(w / z)).double().nanmean(0)
        logged = torch.tensor([[math.nan if v is None else v for v in row]
                               for row in scored["positions"]["dsc"]], dtype=torch.float64)  # fmt: skip
        torch.testing.assert_close(logged, grid, atol=1e-4, rtol=0, equal_nan=True)
    for label in BRANCHES:  # the best epoch is the maximum of the logged validation DSC
        rows = metrics_rows(run / "seed-0" / "branches" / label)
        best = max(rows, key=lambda r: r["metrics"]["dsc_mean"])
        job = next(j for j in summary["jobs"] if j["label"] == label and j["seed"] == 0)
        assert job["best_epoch"] == best["epoch"]


def test_convergence_recomputed_from_the_epoch_logs(compare_run):
    run, _ = compare_run
    summary = json.loads((run / "summary.json").read_text())
    curves = {b: [[r["metrics"]["dsc_mean"] for r in metrics_rows(run / f"seed-{s}" / "branches" / b)]
                  for s in SEEDS] for b in BRANCHES}  # fmt: skip
    target = 0.95 * max(v for cs in curves.values() for c in cs for v in c)
    assert math.isclose(summary["convergence_target"], target)
    for rec in summary["convergence"]:
        for i, c in enumerate(curves[rec["label"]]):
            assert rec["epochs_to_target"][i] == next((k + 1 for k, v in enumerate(c) if v >= target), None)
            assert math.isclose(rec["mean_dsc"][i], sum(c) / len(c))


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize(
    ("method", "cycles"),
    # random: the resumed run must continue the attributor's random stream (its state is
    # checkpointed), or cycle 3 erases other windows than the uninterrupted run's.
    [("gradcam", 2), ("random", 3)],
)
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch, method, cycles):
    import ada_core.engine.phase as phase

    def config(name):
        return parse_config(tiny_config(tmp_path, name, attributors=[method], standard_epochs=2,
                                        cycles=cycles, ada_epochs=2, robustness=False))  # fmt: skip

    run_study(config("full"), load_plugins(), mode="train", quiet=True)
    real, calls = phase.train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # standard 2 epochs, then branch epochs 1-3: stop inside cycle 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(phase, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(config("cut"), load_plugins(), mode="train", quiet=True)
    monkeypatch.setattr(phase, "train_epoch", real)
    branch = f"seed-0/branches/{method}"
    assert len(metrics_rows(tmp_path / "cut" / branch)) == 3
    with pytest.raises(ConfigError, match=rf"unfinished work:\n  {method} \(seed 0\): interrupted"):
        run_study(config("cut"), load_plugins(), mode="train", quiet=True)
    run_study(config("cut"), load_plugins(), mode="train", quiet=True, resume=True)
    full = load_checkpoint(tmp_path / "full" / branch / "last.pt")
    cut = load_checkpoint(tmp_path / "cut" / branch / "last.pt")
    for k, v in full["model"].items():
        assert torch.equal(v, cut["model"][k]), k
    losses = lambda name: [r["loss"] for r in metrics_rows(tmp_path / name / branch)]  # noqa: E731
    assert losses("full") == losses("cut") and len(losses("cut")) == 2 * cycles


def test_both_keep_training_controls_in_one_study(tmp_path):
    data = tiny_config(tmp_path, "matched", standard_epochs=1, cycles=1, ada_epochs=1,
                       robustness=False, attributors=[
                           "none", {"name": "none", "label": "none_matched",
                                    "params": {"steps": "matched"}}, "vanilla"])  # fmt: skip
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    seen = {b: metrics_rows(run / "seed-0" / "branches" / b)[0]["train_images"]
            for b in ("none", "none_matched", "vanilla")}  # fmt: skip
    n = json.loads((run / "summary.json").read_text())["slices"][""]["train"]
    assert seen == {"none": n, "none_matched": 2 * n, "vanilla": 2 * n}
    summary = json.loads((run / "summary.json").read_text())
    controls = {c["control"] for c in summary["statistics"]["comparisons"]}
    assert controls == {"none", "none_matched"}  # each a labelled control


def test_extra_evaluation_sets_are_scored_at_every_selected_checkpoint(tmp_path):
    data = tiny_config(tmp_path, "extra", standard_epochs=2, cycles=1, ada_epochs=1,
                       robustness=False, attributors=["vanilla", "none"])  # fmt: skip
    no_cue = {**data["data"], "params": {**data["data"]["params"], "context_cue": False}}
    data["evaluate"] = [{**no_cue, "label": "no_cue", "part": "val"}]
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert "no_cue" in [s["name"] for s in summary["sets"]]
    config = run_config(run)
    reg = load_plugins()
    spec = config.evaluate[0]
    _, val = split_slices(load_slices(reg.build("dataset", spec), spec.preprocess), spec.split)
    for job in summary["jobs"]:
        model = reg.build("model", config.model)
        model.load_state_dict(load_checkpoint(run / job["path"] / job["selected"])["model"])
        model.eval()
        with torch.no_grad():
            dsc = _dsc_by_hand((model(val.images) > 0).float(), val.masks)
        scored = json.loads((run / job["eval_path"] / "summary.json").read_text())
        assert scored["sets"]["no_cue"]["dsc_mean"] == pytest.approx(dsc[~dsc.isnan()].mean().item(), abs=1e-4)


def test_bad_evaluation_set_fails_before_any_training(tmp_path):
    data = tiny_config(tmp_path, "badeval")
    data["evaluate"] = [{"name": "phantm", "label": "x"}]
    with pytest.raises(ConfigError, match=r"evaluate\[0\]\.name = 'phantm'.*Did you mean 'phantom'"):
        run_study(parse_config(data), load_plugins(), quiet=True)
    assert not (tmp_path / "badeval").exists()
    data["evaluate"] = [{"name": "phantom", "label": "x"}, {"name": "phantom", "label": "x"}]
    with pytest.raises(ConfigError, match="evaluation set labels must be unique"):
        parse_config(data)


def test_the_engine_does_not_import_the_report():
    """The RunSummary is the contract: no module of ada_core.engine imports ada_core.report."""
    import ast

    engine = Path(__file__).resolve().parents[1] / "ada_core" / "engine"
    for path in sorted(engine.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("ada_core.report") for n in names), path.name


@pytest.mark.parametrize("rule", ["last", "average"])
def test_the_checkpoint_rule_selects_the_weights_that_are_scored(tmp_path, rule):
    data = tiny_config(tmp_path, rule, attributors=["vanilla"], standard_epochs=3, cycles=1,
                       ada_epochs=3, robustness=False, checkpoint=rule,
                       # last.prev.pt below is the epoch before last only with a save per epoch
                       checkpoint_every=1,
                       **({"average_last": 2} if rule == "average" else {}))  # fmt: skip
    run = run_study(parse_config(data), load_plugins(), quiet=True).run_dir
    config, reg, _, val, _ = _slices(run)
    for phase in ("standard", "branches/vanilla"):
        folder = run / "seed-0" / phase
        done = json.loads((folder / "done.json").read_text())
        last = load_checkpoint(folder / "last.pt")["model"]
        if rule == "last":
            assert done["selected"] == "last.pt"
            expected = last
        else:  # the mean of the last two epochs' weights: last.pt and the one it replaced
            assert done["selected"] == "average.pt"
            prev = load_checkpoint(folder / "last.prev.pt")["model"]
            expected = {k: (v + prev[k]) / 2 if v.is_floating_point() else v for k, v in last.items()}
        selected = load_checkpoint(folder / done["selected"])["model"]
        for k, v in expected.items():
            torch.testing.assert_close(selected[k], v, rtol=1e-6, atol=1e-7)
        model = reg.build("model", config.model)
        model.load_state_dict(expected)
        model.eval()
        with torch.no_grad():
            dsc = _dsc_by_hand((model(val.images) > 0).float(), val.masks)
        key = next(p for p in (folder / "eval").iterdir())
        scored = json.loads((key / "summary.json").read_text())
        assert scored["sets"]["val"]["dsc_mean"] == pytest.approx(dsc[~dsc.isnan()].mean().item(), abs=1e-3)


# --------------------------------------------------------------------------- waste removed
# The measured speed-ups (issue 21) change no number: each is compared with the path it
# replaced, run in the same test, bit for bit.

_SPEED_METHODS = ["gradcam", "vanilla", "input_x_gradient", "guided_backprop", "guided_gradcam",
                  "random", "none"]  # fmt: skip


def _rows(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_speed_ups_leave_results_csv_bit_identical(tmp_path, monkeypatch):
    """Shared first-cycle pass, last.pt every 4 epochs, epochs validated without surface
    distances, robustness scored on the reported metrics only: against each branch
    attributing alone, last.pt every epoch and every metric everywhere."""
    from ada_core.engine import phase as phase_mod
    from ada_core.engine import plan as plan_mod
    from ada_core.engine import study as study_mod
    from ada_core.quantities import METRICS

    def config(name, every):
        return parse_config(tiny_config(tmp_path, name, attributors=_SPEED_METHODS, test=True,
                                        standard_epochs=5, cycles=2, ada_epochs=3,
                                        checkpoint_every=every))  # fmt: skip

    real, shared = study_mod.shared_first_cycle, []

    def spy(*args):
        shared.append(real(*args))
        return shared[-1]

    monkeypatch.setattr(study_mod, "shared_first_cycle", spy)
    fast = run_study(config("fast", 4), load_plugins(), quiet=True).run_dir
    assert len(shared) == 1 and len(shared[0]) == 5  # every deterministic method, one pass
    monkeypatch.setattr(study_mod, "shared_first_cycle", lambda *args: {})
    monkeypatch.setattr(phase_mod, "EPOCH_METRICS", tuple(METRICS))
    monkeypatch.setattr(plan_mod, "COMPARED_METRICS", tuple(METRICS))
    ref = run_study(config("ref", 1), load_plugins(), quiet=True).run_dir
    got, want = _rows(fast), _rows(ref)
    assert len(got) == len(want) > 0
    skipped = {m for m in METRICS if m not in plan_mod.PAPER_METRICS + ("fail",)}
    assert skipped == {"hd95", "hd95_monai"}
    for g, w in zip(got, want, strict=True):
        if g["set"] in ("robustness", "robustness_near"):
            assert all(g[m] == "" for m in skipped) and any(w[m] != "" for m in skipped) or \
                all(w[m] == "" for m in skipped)  # fmt: skip
            g = {k: v for k, v in g.items() if k not in skipped}
            w = {k: v for k, v in w.items() if k not in skipped}
        assert g == w
    for job in ["standard", *(f"branches/{b}" for b in _SPEED_METHODS)]:
        a, b = metrics_rows(fast / "seed-0" / job), metrics_rows(ref / "seed-0" / job)
        assert [r["loss"] for r in a] == [r["loss"] for r in b], job
        assert [r["counters"] for r in a] == [r["counters"] for r in b], job
        for key in ("dsc_mean", "tpr_mean", "fail_mean"):
            assert [r["metrics"][key] for r in a] == [r["metrics"][key] for r in b], job
        assert "hsd_mean" not in a[0]["metrics"]  # one record schema, whatever was computed
        x, y = load_checkpoint(fast / "seed-0" / job / "last.pt"), load_checkpoint(ref / "seed-0" / job / "last.pt")
        assert x["epoch"] == y["epoch"] and all(torch.equal(v, y["model"][k]) for k, v in x["model"].items())
        if job != "standard" and not job.endswith("none"):
            k1, k2 = (load_checkpoint(r / "seed-0" / job / "cycle1.pt") for r in (fast, ref))
            assert torch.equal(k1["keep"], k2["keep"]) and torch.equal(k1["ada_images"], k2["ada_images"])
    # a branch has 6 epochs: fast wrote last.pt at 4 and 6, the reference at every one
    assert load_checkpoint(fast / "seed-0/branches/vanilla/last.prev.pt")["epoch"] == 4
    assert load_checkpoint(ref / "seed-0/branches/vanilla/last.prev.pt")["epoch"] == 5


def test_the_shared_first_cycle_pass_equals_each_branch_alone_bit_for_bit():
    """attribute_all on the U-Net from one state: every deterministic method's maps equal
    its own attribute() call exactly (the engine relies on it), batch by batch."""
    from ada_core.attribution import attribute_all

    reg = load_plugins()
    torch.manual_seed(0)
    model = reg.models.build("unet-paper", {"width": 4, "depth": 2})
    images = torch.randn(10, 1, 32, 32)
    masks = (torch.rand(10, 1, 32, 32) > 0.7).float()
    names = [m for m in _SPEED_METHODS if m not in ("random", "none")]
    together = attribute_all({n: reg.attributors.build(n) for n in names}, model, images, masks,
                             batch_size=4)  # fmt: skip
    for n in names:
        alone = reg.attributors.build(n)
        ref = torch.cat([alone.attribute(model, images[s:s + 4], masks[s:s + 4]) for s in (0, 4, 8)])
        assert torch.equal(together[n], ref), n
