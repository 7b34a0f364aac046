"""Studies over processes (issue 13): torchrun ranks, ``--shard I/N`` and ``train.ddp``.

Real torchrun, real torch.distributed (gloo on the CPU). Every multi-process run is compared
with an independent single-process run of the same tiny study: every checkpoint tensor and the
summary statistics must be equal, bit for bit. Every process runs with one intra-op thread
(``OMP_NUM_THREADS=1``, torchrun's own default for its workers): oneDNN's CPU reductions depend
on the thread count, so bit-equality needs the same count on both sides.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from itertools import permutations, product
from pathlib import Path

import ddp_worker
import pytest
import torch
from studykit import ROOT, ada_cli, tiny_config, write_config
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ada_core.augment import AugmentConfig, Augmenter
from ada_core.cli import main
from ada_core.config import parse_config
from ada_core.data import load_slices
from ada_core.engine import build_plan
from ada_core.runfolder import (
    BestRecord,
    DoneRecord,
    FailedRecord,
    JobPaths,
    RunLayout,
    write_record,
)
from studykit import load_pt as load_checkpoint
from ada_core.engine.ddp import DataParallel
from ada_core.engine.distributed import (
    Processes,
    StandardUnavailable,
    failed_stamp,
    open_processes,
    wait_for_standard,
)
from ada_core.engine.jobs import Job, Replicate
from ada_core.engine.schedule import assign
from ada_core.engine.loop import Runtime, train_epoch
from ada_core.engine.losses import bce_loss, soft_dice_loss
from ada_core.engine.plan import Branch
from ada_core.engine.preflight import for_process
from ada_core.errors import ConfigError
from ada_core.plugins import load_plugins
from ada_core.splits import fold_slices, plan_folds
from ada_core.testing.models import TinySegModel

BRANCHES = ["gradcam", "random", "none"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (a free port: tests may run side by side)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every checkpoint under ``run``, keyed by file and key path."""
    out: dict[str, torch.Tensor] = {}

    def visit(value: object, key: str) -> None:
        if isinstance(value, torch.Tensor):
            out[key] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                visit(v, f"{key}/{k}")

    for path in sorted(run.rglob("*.pt")):
        visit(torch.load(path, weights_only=True), str(path.relative_to(run)))
    return out


def assert_same_results(run: Path, reference: Path) -> None:
    mine, ref = tensors(run), tensors(reference)
    assert sorted(mine) == sorted(ref)
    for seed in (0, 1):  # the files the issue names are there
        for job in ["standard", *(f"branches/{b}" for b in BRANCHES)]:
            for name in ("best.pt", "last.pt"):
                assert f"seed-{seed}/{job}/{name}/model/head.weight" in mine, (seed, job, name)
    differ = [k for k in ref if not torch.equal(mine[k], ref[k])]
    assert not differ, differ[:5]
    stats = [json.loads((r / "summary.json").read_text())["statistics"] for r in (run, reference)]
    assert stats[0] == stats[1] and stats[0]["comparisons"]
    assert (run / "results.csv").read_text() == (reference / "results.csv").read_text()


def job_lines(text: str, who: str) -> dict[int, list[str]]:
    """``{r: [job titles]}`` from the lines ``<who> r...: k of n jobs: a, b, ...`` (as printed,
    or as log records on stderr: ``<time> INFO ada_core.engine: <who> r/n: ...``)."""
    out = {}
    for line in text.splitlines():
        start = line.find(f"{who} ")
        if start >= 0 and " jobs: " in line and line[start:].split()[1][0].isdigit():
            line = line[start:]
            r = int(line.split()[1].split("/")[0])
            out[r] = line.split(" jobs: ", 1)[1].split(", ")
    return out


# --------------------------------------------------------------------------- the job split


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    configs = {name: write_config(tiny_config(out, name, attributors=BRANCHES, seeds=[0, 1], test=True),
                                  out / f"{name}.toml")
               for name in ("single", "ranks", "shards")}  # fmt: skip
    proc = ada_cli("compare", str(configs["single"]), "--quiet", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, configs


@pytest.fixture(scope="module")
def ranks(study):
    out, configs = study
    proc = torchrun("-m", "ada_core.cli", "compare", str(configs["ranks"]), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "ranks", proc


def test_torchrun_ranks_share_the_jobs_and_equal_one_process(study, ranks):
    out, _ = study
    run, proc = ranks
    split = job_lines((run / "log" / "ada.log").read_text(), "rank")
    titles = [t for r in (0, 1) for t in split[r]]
    assert len(titles) == len(set(titles)) == 2 * (1 + len(BRANCHES))  # each job once
    assert all(split[r][0].startswith("standard") for r in (0, 1))  # the seeds' standard phases first
    # Each job folder was trained under one process's job lock: the folders of one rank
    # share that rank's PID, and the two ranks' PIDs differ.
    pid = {}
    for r, jobs in split.items():
        for title in jobs:
            label, seed = title.split(" (seed ")
            folder = run / f"seed-{seed.rstrip(')')}" / ("standard" if label == "standard" else f"branches/{label}")
            pid.setdefault(r, set()).add(json.loads((folder / ".lock").read_text())["pid"])
    assert len(pid[0]) == len(pid[1]) == 1 and pid[0] != pid[1]
    assert proc.stdout.count("report: ") == 1  # only rank 0 aggregated and wrote the report
    assert_same_results(run, out / "single")


def test_shards_run_what_the_ranks_run_and_aggregate_to_one_process(study, ranks):
    out, configs = study
    cmd = [sys.executable, "-m", "ada_core.cli", "compare", str(configs["shards"]), "--quiet", "--shard"]
    # Shard 1 first: its branches of seed 0 wait for shard 0's standard phase.
    procs = [subprocess.Popen([*cmd, f"{i}/2"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (1, 0)]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, stderr[-3000:]
        assert "Once every shard has finished: ada aggregate" in stdout and "report:" not in stdout
    run = out / "shards"
    assert not (run / "summary.json").exists()  # a shard never aggregates
    shards = job_lines((out / "shards" / "log" / "ada.log").read_text(), "shard")
    assert shards == job_lines((ranks[0] / "log" / "ada.log").read_text(), "rank")  # shard I runs rank I's jobs
    proc = ada_cli("aggregate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_results(run, out / "single")


# --------------------------------------------------------------------------- waiting


def _done(std: JobPaths, key: str) -> None:
    write_record(std.done, std.root, DoneRecord(
        key=key, epochs=1, best=BestRecord(epoch=1, cycle=0, metrics={}), selected="best.pt",
        selected_epoch=1, seconds=0.0))  # fmt: skip


def _failed(std: JobPaths, error: str, key: str = "k") -> None:
    write_record(std.failed, std.root, FailedRecord(key=key, error=error, where="training",
                                                    time="now"))  # fmt: skip


def test_a_branch_waits_for_its_standard_phase_and_ignores_other_settings(tmp_path):
    std = JobPaths(tmp_path, Path("seed-0/standard"))
    std.folder.mkdir(parents=True)
    _done(std, "old settings")  # another key: not the phase waited for

    def finish() -> None:
        time.sleep(0.3)
        _done(std, "k")

    thread = threading.Thread(target=finish)
    t0 = time.monotonic()
    thread.start()
    wait_for_standard(std, "k", owner="shard 0/2", timeout_s=30, poll_s=0.05)
    thread.join()
    assert 0.3 <= time.monotonic() - t0 < 10


def test_a_failed_standard_phase_stops_the_wait_with_its_error_and_a_stale_one_does_not(tmp_path):
    std = JobPaths(tmp_path, Path("seed-0/standard"))
    std.folder.mkdir(parents=True)
    _failed(std, "the training loss became nan")
    stale = failed_stamp(std)
    with pytest.raises(StandardUnavailable, match=r"gave up after .* no done.json appeared\. Its "
                       r"folder holds a failed.json from an earlier attempt.*--resume"):  # fmt: skip
        wait_for_standard(std, "k", owner="shard 0/2", timeout_s=0.3, stale=stale, poll_s=0.05)
    time.sleep(0.01)
    _failed(std, "the training loss became inf")  # this attempt's
    with pytest.raises(StandardUnavailable, match=r"run by shard 0/2\) failed: the training loss became inf"):
        wait_for_standard(std, "k", owner="shard 0/2", timeout_s=30, stale=stale, poll_s=0.05)


def test_branches_of_a_standard_phase_that_failed_elsewhere_are_reported_not_run(tmp_path, capsys):
    from ada_core.engine.distributed import Remote
    from ada_core.engine.jobs import JobState, plan_jobs
    from ada_core.engine.study import execute

    plan = build_plan(parse_config(tiny_config(tmp_path, attributors=["vanilla", "none"])), load_plugins())
    std, *branches = plan_jobs(plan, [Replicate("", 0, ("a",), ("b",))], "fingerprint")
    _failed(std.paths, "the training loss became nan", std.key)
    t0 = time.monotonic()
    failed = execute(plan, [JobState(b, "new") for b in branches], None, quiet=True,  # type: ignore[arg-type]
                     remote={std.paths: Remote("shard 0/2", None)}, wait_s=60)  # fmt: skip
    assert time.monotonic() - t0 < 30  # the failure ends the wait at once, for both branches
    assert failed == [f"{b.title} not run: its standard phase ({std.folder}, run by shard 0/2) "
                      "failed: the training loss became nan" for b in branches]  # fmt: skip
    assert "NOT RUN: vanilla (seed 0) not run" in capsys.readouterr().out
    assert not any(b.folder.exists() for b in branches)  # untouched: a rerun starts them afresh


# --------------------------------------------------------------------------- which jobs


def _fake_jobs(seeds: int, branches: int) -> list[Job]:
    jobs = []
    layout = RunLayout(Path("/run"))
    for s in range(seeds):
        rep = Replicate("", s)
        where = layout.replicate("", s)
        jobs.append(Job(rep, None, where.standard, f"s{s}", {}))
        for b in range(branches):
            branch = Branch(f"b{b}", "m", f"b{b}", False, None, 1, {})
            jobs.append(Job(rep, branch, where.branch(f"b{b}"), f"s{s}b{b}", {}))
    return jobs


def _makespan(jobs: list[Job], costs: list[float], orders) -> float | None:
    """Makespan of running ``orders`` (per process) with branches after their standard
    phase; None when the orders wait on each other for ever."""
    std = {j.paths: i for i, j in enumerate(jobs) if j.branch is None}
    end: dict[int, float] = {}
    pos, free = [0] * len(orders), [0.0] * len(orders)
    moved = True
    while moved:
        moved = False
        for r, order in enumerate(orders):
            while pos[r] < len(order):
                i = order[pos[r]]
                dep = None if jobs[i].branch is None else std[jobs[i].paths.standard]
                if dep is not None and dep not in end:
                    break
                free[r] = end[i] = max(free[r], 0.0 if dep is None else end[dep]) + costs[i]
                pos[r] += 1
                moved = True
    return max(free) if all(p == len(o) for p, o in zip(pos, orders, strict=True)) else None


def test_the_job_split_is_within_the_list_scheduling_bound_of_the_best_split():
    rng = random.Random(0)
    jobs = _fake_jobs(seeds=2, branches=2)
    for _ in range(3):
        costs = [rng.choice([1.0, 2.0, 5.0]) * (3 if j.branch is None else 1) for j in jobs]
        split = assign(jobs, costs, 2)
        assert sorted(i for part in split for i in part) == list(range(len(jobs)))
        got = _makespan(jobs, costs, split)
        best = min(  # brute force: every assignment and every order on each process
            m for owners in product(range(2), repeat=len(jobs))
            for orders in product(*(permutations([i for i, o in enumerate(owners) if o == r]) for r in range(2)))
            if (m := _makespan(jobs, costs, orders)) is not None
        )  # fmt: skip
        assert got is not None and got <= (2 - 1 / 2) * best, (costs, split, got, best)


def test_too_many_processes_or_a_bad_shard_are_clear_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="3 processes for 2 jobs: 1 would have nothing to do"):
        assign(_fake_jobs(1, 1), [1.0, 1.0], 3)
    cfg = write_config(tiny_config(tmp_path, "bad"), tmp_path / "bad.toml")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for shard in ("3/2", "x", "1/0", "-1/2"):
        assert main(["compare", str(cfg), f"--shard={shard}"]) == 2
        err = capsys.readouterr().err
        assert f"--shard {shard}: expected I/N with 0 <= I < N" in err and "Traceback" not in err
    assert main(["compare", str(cfg), "--set", "train.ddp=true"]) == 2
    assert "train.ddp = true in a single process: data-parallel training needs 2 or more" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="--shard 0/2 under torchrun"):
        open_processes("0/2", ddp=False, device="cpu", timeout_h=1)
    assert not (tmp_path / "bad").exists()  # nothing started


def test_ddp_batch_size_must_divide_by_the_processes(tmp_path):
    config = parse_config(tiny_config(tmp_path, ddp=True, batch_size=8))
    plan = build_plan(config, load_plugins())
    with pytest.raises(ConfigError, match=r"batch_size = 8 does not split over 3 processes.*e\.g\. 6 or 9"):
        for_process(plan, Processes("torchrun", 0, 3), config.train)
    ok = for_process(plan, Processes("torchrun", 1, 2), config.train)
    assert ok.runtime.ddp == DataParallel(1, 2) and not ok.runtime.leader
    assert ok.standard_settings["ddp_processes"] == 2  # the world size is part of the key


def test_each_rank_takes_an_equal_contiguous_part_of_a_batch():
    for n, world in [(8, 2), (3, 2), (7, 3), (16, 4)]:
        parts = [DataParallel(r, world).part(n) for r in range(world)]
        reference = torch.tensor_split(torch.arange(n), world)
        assert [list(range(n))[p] for p in parts] == [t.tolist() for t in reference]
    assert DataParallel(1, 4).part(3) is None  # fewer samples than processes: skipped


# --------------------------------------------------------------------------- DDP


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    cfg = write_config(tiny_config(out, "ddp", attributors=["gradcam", "random"], ddp=True,
                                   robustness=False), out / "ddp.toml")  # fmt: skip
    proc = torchrun(str(Path(__file__).parent / "ddp_worker.py"), str(cfg), str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_ddp_training_writes_one_consistent_run_folder(ddp_run):
    run = ddp_run / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and [j["label"] for j in summary["jobs"]] == ["standard", "gradcam"]
    for job, epochs in (("standard", 2), ("branches/gradcam", 4)):
        folder = run / "seed-0" / job
        rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))  # each epoch once: rank 0 wrote
        assert not [p for p in folder.rglob(".*.tmp*")]
        assert json.loads((folder / "done.json").read_text())["epochs"] == epochs
    key = json.loads((run / "seed-0/standard/key.json").read_text())
    assert key["settings"]["settings"]["ddp_processes"] == 2


def test_ddp_ranks_hold_identical_weights(ddp_run):
    a = torch.load(ddp_run / "bn-rank0.pt", weights_only=True)
    b = torch.load(ddp_run / "bn-rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["encoder.1.num_batches_tracked"]) == 2 * 3  # 2 epochs of 20 images, batch 8


def test_sharded_attribution_gives_exactly_the_masks_of_one_process(ddp_run):
    config = parse_config(json.loads((ddp_run / "ddp" / "config.json").read_text()))
    reg = load_plugins()
    slices = load_slices(reg.build("dataset", config.data), config.data.preprocess)
    (fold,) = plan_folds(slices.group, slices.site, config.data.split, subjects=slices.subject)
    train = fold_slices(slices, fold)[0]
    model = reg.build("model", config.model)
    model.load_state_dict(load_checkpoint(ddp_run / "ddp/seed-0/standard/last.pt")["model"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        for spec in config.attributors:
            attributor, mask = reg.build("attributor", spec), reg.build("mask", config.mask)
            attributor.set_seed(7)
            b = ddp_worker.KEEP_BATCH
            keep = torch.cat([mask.build(attributor.attribute(model, train.images[s:s + b], train.masks[s:s + b]),
                                         train.masks[s:s + b]) for s in range(0, len(train), b)])  # fmt: skip
            gathered = torch.load(ddp_run / f"keep-{spec.name}.pt", weights_only=True)
            assert len(train) > 2 * b and torch.equal(gathered["keep"], keep), spec.name
            assert gathered["counters"] == dict(mask.counters)
    finally:
        torch.set_num_threads(threads)


def test_ddp_gradients_are_the_full_batch_gradients(ddp_run):
    net, (x, y) = ddp_worker.plain_net(), ddp_worker.plain_data()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss = train_epoch(net, opt, x, y, loss_fn=bce_loss, batch_size=8,
                       shuffle=torch.Generator().manual_seed(4), augmenter=None,
                       runtime=Runtime(torch.device("cpu")))  # fmt: skip
    ddp = torch.load(ddp_run / "plain.pt", weights_only=True)
    assert float(ddp["loss"]) == pytest.approx(float(loss), rel=1e-6)
    for k, v in net.state_dict().items():  # the last batch of 3 split 2 + 1 is weighted right
        torch.testing.assert_close(ddp["model"][k], v, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- the step


class _Syncs(TorchDispatchMode):
    """Records the ops that make the host wait for the device (.item(), bool(), nonzero)."""

    OPS = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
           torch.ops.aten.nonzero.default)  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_training_step_never_waits_for_the_device(monkeypatch):
    import ada_core.augment

    # The step as a GPU runs it: the CPU alone picks the elastic rows (a host read there).
    monkeypatch.setattr(ada_core.augment, "_picks_rows", lambda device: False)
    torch.manual_seed(0)
    model = TinySegModel()
    # SGD: Adam's step counter is a CPU tensor read with .item() (no device sync on CUDA,
    # where fused Adam keeps it on the device anyway), indistinguishable from one on the CPU.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(20, 1, 16, 16), (torch.rand(20, 1, 16, 16) > 0.7).float()
    with _Syncs() as syncs:
        loss = train_epoch(model, opt, x, y, loss_fn=soft_dice_loss, batch_size=8,
                           shuffle=torch.Generator().manual_seed(0),
                           augmenter=Augmenter(AugmentConfig(), torch.Generator().manual_seed(1)),
                           runtime=Runtime(torch.device("cpu")), augment_mask=torch.rand(20) > 0.5)  # fmt: skip
    assert syncs.seen == []
    with _Syncs() as syncs:  # the detector sees the one read per epoch the phase makes
        float(loss)
    assert syncs.seen == ["aten._local_scalar_dense.default"]


def test_compile_setting_trains_through_torch_compile_and_keeps_plain_checkpoints(monkeypatch):
    asked = []
    real = torch.compile

    def compile_on_cpu(module, mode=None, **kw):  # inductor takes minutes on 2 cores
        asked.append(mode)
        return real(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_on_cpu)
    runtime = Runtime(torch.device("cpu"), compile="reduce-overhead")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    eager = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    eager.load_state_dict(model.state_dict())
    x, y = torch.randn(12, 1, 8, 8), (torch.rand(12, 1, 8, 8) > 0.5).float()
    for net, rt in ((model, runtime), (eager, Runtime(torch.device("cpu")))):
        train_epoch(rt.train_module(net), rt.optimizer(list(net.parameters()), 1e-2), x, y,
                    loss_fn=bce_loss, batch_size=8, shuffle=torch.Generator().manual_seed(0),
                    augmenter=None, runtime=rt)  # fmt: skip
    assert asked == ["reduce-overhead"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # no _orig_mod.
    for a, b in zip(model.parameters(), eager.parameters(), strict=True):  # trained, like eager
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fused Adam is a CUDA kernel")
def test_fused_adam_on_cuda_steps_like_the_default_adam():
    dev = torch.device("cuda")
    torch.manual_seed(0)
    a, b = nn.Linear(8, 8).to(dev), nn.Linear(8, 8).to(dev)
    b.load_state_dict(a.state_dict())
    fused = Runtime(dev, fused_adam=True).optimizer(list(a.parameters()), 1e-2)
    plain = Runtime(dev).optimizer(list(b.parameters()), 1e-2)
    assert fused.defaults["fused"] and not plain.defaults.get("fused")
    x = torch.randn(16, 8, device=dev)
    for net, opt in ((a, fused), (b, plain)):
        for _ in range(3):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
