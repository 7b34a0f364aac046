"""The engine's measured waste, removed: each new path against the one it replaced, same run.

At the demo's size (64 x 64 phantom slices, ``unet-paper`` width 8 depth 3, trained a few
epochs so that its predictions look like a study's), on the CPU (one thread by default):

- ``robustness``: Algorithm 2 scoring of 16 slices with Z = 8 (1,024 occluded copies) on the
  metrics the study reports there (paper columns, compared metrics) against every metric;
  the forward pass alone is timed too, since it bounds both;
- ``epoch validation``: a per-epoch validation (DSC and the counts) against every metric;
- ``checkpoint``: ``last.pt`` of the paper-size network (width 64, depth 3; model + Adam)
  written every 5 epochs against every epoch, per epoch;
- ``first-cycle attribution``: the five deterministic attributors of the demo on its 40
  training slices in one shared pass (``attribute_all``) against one pass each.

Every pair is checked to compute the same values before timing (equal rows, equal maps).

    python bench/bench_waste.py            # a few minutes on a shared CPU
    python bench/bench_waste.py --quick    # 8 test slices, 2 repeats (make bench)
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from _timing import compare, cpu_args, report
from ada_core.attribution import attribute_all
from ada_core.config import ComponentSpec
from ada_core.data import PreprocessConfig, load_slices
from ada_core.engine.evaluation import _robustness
from ada_core.engine.loop import Runtime, evaluate_slices, predict, train_epoch
from ada_core.engine.losses import soft_dice_loss
from ada_core.engine.phase import EPOCH_METRICS
from ada_core.engine.plan import Evaluation
from ada_core.engine.runlog import Silent
from ada_core.plugins import load_plugins
from ada_core.quantities import COMPARED_METRICS, METRICS, PAPER_METRICS
from ada_core.runfolder import JobPaths, TrainingState, write_training_state

METHODS = ("vanilla", "guided_backprop", "gradcam", "guided_gradcam", "input_x_gradient")
CPU = torch.device("cpu")


def setup(n_train: int, n_test: int, epochs: int):
    reg = load_plugins()
    n = n_train + n_test
    spec = ComponentSpec(name="phantom", params={"n_subjects": math.ceil(n / 4), "slices_per_subject": 4,
                                                 "size": [128, 128], "spacing": 0.5, "seed": 0,
                                                 "gm_contrast": 0.25, "context_cue": True})  # fmt: skip
    slices = load_slices(reg.build("dataset", spec), PreprocessConfig(spacing=0.5, size=(64, 64)))
    train, test = slices.subset(range(n_train)), slices.subset(range(n_train, n))
    torch.manual_seed(0)
    model = reg.build("model", ComponentSpec(name="unet-paper", params={"width": 8, "depth": 3}))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        train_epoch(model, opt, train.images, train.masks, loss_fn=soft_dice_loss, batch_size=8,
                    shuffle=g, augmenter=None, runtime=Runtime(CPU))  # fmt: skip
    return reg, model.eval(), train, test


def robustness_case(model, test, reps: int) -> list[dict]:
    rt = Runtime(CPU)
    clean = evaluate_slices(model, test, 128, rt)
    reported = tuple(dict.fromkeys([*PAPER_METRICS, *COMPARED_METRICS]))
    ev_new = Evaluation(True, 8, 2.0, None, 0.0, reported)
    ev_old = Evaluation(True, 8, 2.0, None, 0.0, tuple(METRICS))
    new = _robustness(model, test, clean, ev_new, 128, rt, Silent())
    old = _robustness(model, test, clean, ev_old, 128, rt, Silent())
    for m in reported:  # the same values where both compute them
        for a, b in ((new[0][m], old[0][m]), (new[1][m], old[1][m])):
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), m
    assert new[2] == old[2]
    copies = len(test) * 64
    occluded = test.images.repeat_interleave(64, 0)  # the forward's cost: as many images
    out = [{"case": "robustness", **compare(
        lambda: _robustness(model, test, clean, ev_new, 128, rt, Silent()), copies,
        lambda: _robustness(model, test, clean, ev_old, 128, rt, Silent()), copies, reps, CPU)}]
    out.append({"case": "robustness vs forward only", **compare(
        lambda: _robustness(model, test, clean, ev_new, 128, rt, Silent()), copies,
        lambda: predict(model, occluded, 128, rt), copies, reps, CPU)})
    return out


def validation_case(model, test, reps: int) -> dict:
    rt = Runtime(CPU)
    new = evaluate_slices(model, test, 128, rt, EPOCH_METRICS)
    old = evaluate_slices(model, test, 128, rt)
    assert all(torch.equal(v.nan_to_num(), old[k].nan_to_num()) for k, v in new.items())
    n = len(test)
    return {"case": "epoch validation", **compare(
        lambda: evaluate_slices(model, test, 128, rt, EPOCH_METRICS), n,
        lambda: evaluate_slices(model, test, 128, rt), n, reps, CPU)}


def checkpoint_case(reg, reps: int, every: int = 5) -> dict:
    torch.manual_seed(0)
    big = reg.build("model", ComponentSpec(name="unet-paper", params={"width": 64, "depth": 3}))
    opt = torch.optim.Adam(big.parameters())
    big(torch.zeros(1, 1, 32, 32)).sum().backward()
    opt.step()  # Adam's moments exist: the checkpoint is model + optimiser, as in a run
    state = TrainingState(big.state_dict(), opt.state_dict(), {}, 1, None, 0.0, {}, {})
    with tempfile.TemporaryDirectory() as tmp:
        job = JobPaths(Path(tmp), Path("job"))
        job.folder.mkdir(parents=True)
        size = None

        def epochs(n_writes: int) -> None:
            for _ in range(n_writes):
                write_training_state(job, state)

        epochs(1)
        size = job.last.stat().st_size / 2**20
        rec = compare(lambda: epochs(1), every, lambda: epochs(every), every, reps, CPU)
    return {"case": f"checkpoint every {every} ({size:.0f} MB)", **rec}


def attribution_case(reg, model, train, reps: int) -> dict:
    build = lambda: {m: reg.build("attributor", ComponentSpec(name=m)) for m in METHODS}  # noqa: E731
    shared = attribute_all(build(), model, train.images, train.masks, batch_size=128)
    alone = {m: a.attribute(model, train.images, train.masks) for m, a in build().items()}
    assert all(torch.equal(shared[m], alone[m]) for m in METHODS)  # bit for bit
    n = len(train) * len(METHODS)
    a1, a2 = build(), build()
    return {"case": "first-cycle attribution", **compare(
        lambda: attribute_all(a1, model, train.images, train.masks, batch_size=128), n,
        lambda: [a.attribute(model, train.images, train.masks) for a in a2.values()], n, reps, CPU)}


def main() -> None:
    args = cpu_args(__doc__, "fewer repeats, a shorter training")
    reps = 2 if args.quick else 7
    reg, model, train, test = setup(40, 8 if args.quick else 16, 2 if args.quick else 12)
    records = robustness_case(model, test, reps)
    records.append(validation_case(model, test, reps))
    records.append(checkpoint_case(reg, reps))
    records.append(attribution_case(reg, model, train, reps))
    print(f"torch {torch.__version__}, {args.threads} thread(s); items: occluded copies, slices, "
          "epochs, maps")  # fmt: skip
    report(records, "items/s")


if __name__ == "__main__":
    main()
