"""``train.ensemble`` against the branch-by-branch engine (the independent reference).

The reference is the ordinary path: :func:`ada_core.engine.loop.train_epoch` once per member,
each on its own module, Adam, generators and torch's global stream (what a branch job does),
and a whole study trained branch by branch.
"""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
from studykit import load_pt, metrics_rows, tiny_config
from torch import nn

from ada_core.augment import AugmentConfig, Augmenter
from ada_core.config import parse_config
from ada_core.engine import ensemble, run_study
from ada_core.engine.loop import Runtime, train_epoch
from ada_core.engine.losses import make_loss
from ada_core.errors import ConfigError
from ada_core.plugins import load_plugins

CPU = Runtime(torch.device("cpu"))


def _members(k: int, dropout_kind: str):
    """k U-Nets with batch norm and dropout, different weights, each after one own step
    (so Adam's moments are non-zero and differ), with their own generators and global stream."""
    reg = load_plugins()
    out = []
    for i in range(k):
        torch.manual_seed(100 + i)
        model = reg.models.build("unet-paper", {"width": 4, "depth": 2, "dropout": 0.3,
                                                "dropout_kind": dropout_kind})  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x = torch.randn(4, 1, 32, 32)
        make_loss("dice")(model(x), (x > 0.5).float()).backward()
        opt.step()
        gens = {n: torch.Generator().manual_seed(10 * i + j) for j, n in enumerate(("shuffle", "augment"))}
        out.append((model, opt, gens, torch.get_rng_state()))
    return out


def _data(k: int, n: int):
    g = torch.Generator().manual_seed(7)
    images = [torch.randn(n, 1, 32, 32, generator=g) for _ in range(k)]
    masks = [(torch.rand(n, 1, 32, 32, generator=g) > 0.6).float() for _ in range(k)]
    eligible = [torch.rand(n, generator=g) > 0.3 for _ in range(k)]
    return images, masks, eligible


@pytest.mark.parametrize(("dropout_kind", "n", "batch"), [("channel", 6, 6), ("element", 10, 4)])
def test_ensemble_epoch_equals_each_member_trained_alone(dropout_kind, n, batch):
    """One step (6 images, batch 6) and three steps with a remainder (10, batch 4): weights
    and batch-norm statistics to 1e-5, Adam moments to 1e-5, every random stream bit for bit."""
    k = 3
    members = _members(k, dropout_kind)
    images, masks, eligible = _data(k, n)
    config = AugmentConfig()
    loss_fn = make_loss("dice")
    alone = copy.deepcopy(members)
    before = [{k: v.detach().clone() for k, v in m.named_parameters()} for m, *_ in members]
    ref_losses = []
    for (model, opt, gens, rng), x, y, e in zip(alone, images, masks, eligible, strict=True):
        torch.set_rng_state(rng)  # the member's own job: dropout draws from the global stream
        ref_losses.append(float(train_epoch(model, opt, x, y, loss_fn=loss_fn, batch_size=batch,
                                            shuffle=gens["shuffle"],
                                            augmenter=Augmenter(config, gens["augment"]),
                                            runtime=CPU, augment_mask=e)))  # fmt: skip
        gens["_torch"] = torch.get_rng_state()

    models = [m for m, *_ in members]
    stacked = ensemble.StackedModel(models)
    opt = torch.optim.Adam(list(stacked.params.values()), lr=1e-2)
    ensemble.stack_optimizer(opt, [o for _, o, _, _ in members])
    dropouts = []
    for *_, rng in members:
        dropouts.append(torch.Generator())
        dropouts[-1].set_state(rng)
    losses = ensemble.train_epoch(
        stacked, opt, images, masks, loss_fn=loss_fn, batch_size=batch,
        shuffles=[g["shuffle"] for _, _, g, _ in members], dropouts=dropouts,
        augmenters=[Augmenter(config, g["augment"]) for _, _, g, _ in members], runtime=CPU,
        augment_masks=eligible)  # fmt: skip
    stacked.store(models)
    ensemble.unstack_optimizer(opt, [o for _, o, _, _ in members])

    assert losses.tolist() == pytest.approx(ref_losses, abs=1e-5)
    for (model, o, gens, _), (ref, ref_o, ref_gens, _), d, start in zip(
            members, alone, dropouts, before, strict=True):  # fmt: skip
        ref_state = ref.state_dict()
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                torch.testing.assert_close(t, ref_state[name], atol=1e-5, rtol=0, msg=name)
            else:  # batch norm's num_batches_tracked
                assert torch.equal(t, ref_state[name]), name
        moved = max((t - start[name]).abs().max().item() for name, t in model.named_parameters())
        assert moved > 1e-3  # the step did something to compare
        for p, ref_p in zip(model.parameters(), ref.parameters(), strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(o.state[p][key], ref_o.state[ref_p][key], atol=1e-5, rtol=0)
            assert torch.equal(o.state[p]["step"], ref_o.state[ref_p]["step"])
        for name in ("shuffle", "augment"):
            assert torch.equal(gens[name].get_state(), ref_gens[name].get_state()), name
        assert torch.equal(d.get_state(), ref_gens["_torch"])  # the same dropout draws


def test_stacked_eval_forward_uses_each_members_running_statistics():
    members = _members(3, "channel")
    models = [m for m, *_ in members]
    x = torch.randn(3, 5, 1, 32, 32)
    with torch.no_grad():
        out = ensemble.StackedModel(models)(x, None, train=False)
        for k, m in enumerate(models):
            torch.testing.assert_close(out[k], m.eval()(x[k]), atol=1e-5, rtol=0)


class _NoisyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + torch.rand_like(x)  # randomness outside nn.Dropout


def test_a_model_with_its_own_random_draws_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"model 'noisy'.*random numbers outside nn.Dropout"
                                          r".*train.ensemble = false"):
        ensemble.check_model(_NoisyModel(), (8, 8), "noisy")
    ensemble.check_model(load_plugins().models.build("unet-paper", {"width": 4, "depth": 2}),
                         (32, 32), "unet-paper")  # fmt: skip


@pytest.mark.parametrize(("extra", "match"), [
    ({"ddp": True}, "train.ensemble = true and train.ddp = true"),
    ({"compile": "default"}, "train.compile = 'default'"),
])  # fmt: skip
def test_unsupported_combinations_are_refused_by_the_config(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(tiny_config(tmp_path, ensemble=True, **extra))


def test_shards_are_refused(tmp_path):
    cfg = parse_config(tiny_config(tmp_path, ensemble=True, robustness=False))
    with pytest.raises(ConfigError, match=r"train.ensemble = true .* split over processes"):
        run_study(cfg, load_plugins(), quiet=True, shard="0/2")


def _study(tmp_path, name, **train):
    cfg = parse_config(tiny_config(tmp_path, name, test=True, robustness=False, **train))
    result = run_study(cfg, load_plugins(), quiet=True)
    assert not result.failed, result.failed
    return tmp_path / name


def test_a_study_trained_as_ensemble_equals_the_branch_by_branch_study(tmp_path, monkeypatch):
    """Every scored row's DSC within 1 point mean absolute (per branch and set), the same
    files in every job folder, the standard phase's key unchanged and the branches' not."""
    calls = []
    real = ensemble.train_epoch
    monkeypatch.setattr(ensemble, "train_epoch", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    ref = _study(tmp_path, "alone")
    assert not calls
    ens = _study(tmp_path, "together", ensemble=True)
    # 2 cycles x 2 epochs, for the ADA group (2N images) and the `none` pair (N)
    assert len(calls) == 8
    a, b = (pd.read_csv(r / "results.csv") for r in (ref, ens))
    keys = ["seed", "branch", "set", "person", "subject", "slice"]
    both = a.merge(b, on=keys, suffixes=("_ref", "_ens"), validate="one_to_one")
    assert len(both) == len(a) == len(b)
    gap = (both.dsc_ref - both.dsc_ens).abs().groupby([both.branch, both.set]).mean()
    assert (gap < 1.0).all(), gap[gap >= 1.0]
    for job in ("standard", *(f"branches/{x}" for x in ("gradcam", "vanilla", "random", "none"))):
        files = {p.name for p in (ref / "seed-0" / job).iterdir()}
        assert files == {p.name for p in (ens / "seed-0" / job).iterdir()}, job
    key = lambda run, job: load_key(run / "seed-0" / job)
    assert key(ref, "standard") == key(ens, "standard")
    assert key(ref, "branches/gradcam")["key"] != key(ens, "branches/gradcam")["key"]
    # false: the branch key is the one from before the setting existed
    assert "ensemble" not in key(ref, "branches/gradcam")["settings"]["settings"]["train"]
    assert key(ens, "branches/gradcam")["settings"]["settings"]["train"]["ensemble"] is True


def load_key(job):
    return json.loads((job / "key.json").read_text())


def test_an_interrupted_ensemble_resumes_to_the_same_weights(tmp_path, monkeypatch):
    train = {"ensemble": True, "checkpoint_every": 1}
    full = _study(tmp_path, "full", **train)
    real, calls = ensemble.train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the ADA group's cycle 2, epoch 2 (epoch 4 of the branch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ensemble, "train_epoch", interrupted)
    cfg = parse_config(tiny_config(tmp_path, "cut", test=True, robustness=False, **train))
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, load_plugins(), quiet=True)
    monkeypatch.setattr(ensemble, "train_epoch", real)
    assert len(metrics_rows(tmp_path / "cut" / "seed-0/branches/gradcam")) == 3
    run_study(cfg, load_plugins(), quiet=True, resume=True)
    for label in ("gradcam", "vanilla", "random", "none"):
        a = load_pt(full / f"seed-0/branches/{label}/last.pt")
        b = load_pt(tmp_path / "cut" / f"seed-0/branches/{label}/last.pt")
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (label, k)


def test_a_failing_member_leaves_the_others_training(tmp_path, monkeypatch):
    real = ensemble.train_epoch

    def first_member_diverges(*args, **kwargs):
        losses = real(*args, **kwargs)
        if len(losses) == 3:  # the ADA group: gradcam, vanilla, random
            losses[0] = float("nan")
        return losses

    monkeypatch.setattr(ensemble, "train_epoch", first_member_diverges)
    cfg = parse_config(tiny_config(tmp_path, "nan", robustness=False, ensemble=True))
    result = run_study(cfg, load_plugins(), quiet=True)
    assert len(result.failed) == 1 and "gradcam (seed 0) failed" in result.failed[0]
    branches = tmp_path / "nan" / "seed-0" / "branches"
    assert (branches / "gradcam" / "failed.json").is_file()
    for label in ("vanilla", "random", "none", "none_twin"):
        assert (branches / label / "done.json").is_file(), label
        assert len(metrics_rows(branches / label)) == 4, label
