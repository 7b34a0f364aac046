"""``[train]``: Algorithm 1's schedule, optimisation, checkpoint rule and evaluation.

Re-exported by :mod:`ada_core.config`; every field carries its tag (:mod:`ada_core.fieldtags`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ada_core.fieldtags import Settings, affects, tags, used_if, used_unless, used_when

__all__ = ["CUDA_ONLY", "TrainConfig"]

#: Fields that act only on CUDA: refused with ``device = 'cpu'``; with ``device = 'auto'`` on a
#: machine without CUDA a set one is named in a warning when the run starts (the same file
#: runs on a GPU machine and on a laptop; see docs/config.md).
CUDA_ONLY = ("amp", "channels_last", "fused_adam")
_CUDA = used_unless("device", "cpu")
#: ADA images exist only where a branch erases (checked by the registry, which knows which).
_ERASES = used_if("a branch erases (an attributor other than the `none` control)", "registry")
_CUDA_NOTE = (" With device = 'auto' on a machine without CUDA, a set value is named in a "
              "warning when the run starts.")

class TrainConfig(Settings):
    """Algorithm 1's schedule, optimisation, checkpoint rule and evaluation (paper defaults)."""

    standard_epochs: int = Field(
        100, ge=0, description="Epochs of conventional training.",
        json_schema_extra=affects("standard"),
    )
    cycles: int = Field(
        31, ge=0, description="ADA cycles per branch.", json_schema_extra=affects("branch")
    )
    ada_epochs: int = Field(
        30, ge=1, description="Epochs per ADA cycle.",
        json_schema_extra=affects("branch") | used_unless("cycles", 0),
    )
    batch_size: int = Field(
        16, ge=1, description="Training batch size.", json_schema_extra=affects("standard")
    )
    lr: float = Field(
        1e-3, gt=0, allow_inf_nan=False, description="Adam learning rate (finite, > 0).",
        json_schema_extra=affects("standard"),
    )
    loss: Literal["dice", "bce", "dice+bce"] = Field(
        "dice", description="Training loss.", json_schema_extra=affects("standard")
    )
    seed: int = Field(
        0, description="Seed of everything random in a run when `seeds` is empty.",
        json_schema_extra=affects("none") | used_when("seeds", []),
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="Seeds of the study: each runs its own standard phase and every branch "
        "from it, so branches are paired within a seed (e.g. [0, 1, 2]; `--seeds 0,1,2`). "
        "Empty: the one seed `seed`. Adding a seed to a finished study runs only the new one.",
        json_schema_extra=affects("none"),
    )
    device: str = Field(
        "auto", description="'auto' (CUDA when available), 'cpu' ('cpu:N' is read as 'cpu'), "
        "'cuda', 'cuda:N'. Runs on "
        "CPU and CUDA draw different random streams, so the device type is part of every key.",
        json_schema_extra=affects("none"),
    )
    amp: bool = Field(
        True, description="bf16 autocast on CUDA." + _CUDA_NOTE,
        json_schema_extra=affects("standard") | _CUDA,
    )
    channels_last: bool = Field(
        True, description="channels_last memory format on CUDA." + _CUDA_NOTE,
        json_schema_extra=affects("standard") | _CUDA,
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune",
                     "max-autotune-no-cudagraphs"] = Field(
        "off", description="torch.compile the training forward with this mode: 'default', "
        "'reduce-overhead' (CUDA graphs: fewest kernel launches), 'max-autotune' (also tunes "
        "kernels; slow to compile). 'off': eager. Compiled kernels round differently, so "
        "results change (they are not bit-exact with eager). Meant for CUDA; it works, slowly "
        "to compile, on the CPU (so it applies there too). See docs/performance.md.",
        json_schema_extra=affects("standard"),
    )  # fmt: skip
    fused_adam: bool = Field(
        True, description="Adam's fused CUDA kernel (one launch per step for all parameters "
        "instead of several per tensor)." + _CUDA_NOTE,
        json_schema_extra=affects("standard") | _CUDA,
    )
    threads: int = Field(
        2, ge=1, description="CPU threads of torch's operators (torch.set_num_threads) in every "
        "process that trains or scores, whatever the machine or OMP_NUM_THREADS: on the CPU "
        "the thread count changes how sums are split, hence the last bits of every result, so "
        "it is part of every key and recorded in each job's done.json and the summary's "
        "provenance. 2 fits a laptop and one process per core pair; more speeds large CPU "
        "runs but gives other numbers.",
        json_schema_extra=affects("standard"),
    )
    ddp: bool = Field(
        False, description="Under torchrun: train every job on all processes together "
        "(DistributedDataParallel: each global batch of `batch_size` images split over the "
        "processes, gradients all-reduced) instead of giving each process its own jobs. For "
        "data sets much larger than SCGM; `batch_size` must divide by the number of "
        "processes, which is part of the key. See docs/distributed.md.",
        json_schema_extra=affects("standard") | used_if("the run is started by torchrun", "run"),
    )
    ensemble: bool = Field(
        False, description="Train the branches of a seed together as one batched ensemble "
        "(torch.func: the branches' weights stacked, one vmapped step for all): each branch "
        "keeps its own weights, Adam state, data order, augmentation and dropout streams and "
        "ADA cycles, and writes its own job folder and checkpoints as before (resume, report "
        "and predict are unchanged). Branches whose epochs hold as many images train together "
        "(the ADA branches' 2N; the `none` control's N apart, unless its steps are 'matched'). "
        "Results equal branch-by-branch training to float rounding, not bit for bit, so it is "
        "part of the branch key when true. The model may draw random numbers only in "
        "nn.Dropout modules (checked when the run is planned). Not with `ddp`, `compile`, "
        "torchrun or --shard. See docs/performance.md.",
        json_schema_extra=affects("branch") | used_unless("cycles", 0),
    )
    wait_timeout_h: float = Field(
        72.0, gt=0, allow_inf_nan=False, description="Hours a branch run by one process "
        "(torchrun rank or --shard) waits for its standard phase, run by another, before it "
        "gives up (and how long a torchrun process waits for the others at the end).",
        json_schema_extra=affects("none")
        | used_if("the run has several processes (torchrun or --shard)", "run"),
    )
    eval_batch_size: int = Field(
        64, ge=1, description="Batch size for attribution and evaluation.",
        json_schema_extra=affects("none"),
    )
    checkpoint: Literal["best", "last", "average"] = Field(
        "best", description="Which weights of each phase are scored: 'best' = the epoch with "
        "the best validation DSC (the paper); 'last' = the last epoch; 'average' = the mean of "
        "the weights of the last `average_last` epochs. Only the validation part selects.",
        json_schema_extra=affects("standard"),
    )
    average_last: int = Field(
        5, ge=1, description="k of checkpoint = 'average': average the last k epochs' weights "
        "(at most the epochs of every phase).",
        json_schema_extra=affects("standard") | used_when("checkpoint", "average"),
    )
    augment_ada_images: bool = Field(
        True, description="Apply the classical augmentation to ADA images too (not only to "
        "the conventional ones).",
        json_schema_extra=tags(affects("branch"), used_unless("cycles", 0),
                               used_when("augment.enabled", True), _ERASES),
    )
    save_ada_images: bool = Field(
        True, description="Save each branch's first-cycle ADA images (cycle1.pt) besides its "
        "keep masks, for figures and checks.",
        json_schema_extra=tags(affects("none"), used_unless("cycles", 0), _ERASES),
    )
    convergence_at: list[int] | None = Field(
        None, description="ADA epochs (counted from a branch's start) after which each "
        "branch's per-slice validation metrics are kept as evaluation sets 'val@ada<k>', for "
        "the convergence comparison (the paper: GradCam ahead after the first ADA epochs). "
        "None: the end of the first cycle.",
        json_schema_extra=affects("branch") | used_unless("cycles", 0),
    )
    robustness: bool = Field(
        True, description="Score each phase's selected checkpoint on the robustness sets "
        "(Algorithm 2, and the drop near the ground truth) at the end of a run.",
        json_schema_extra=affects("eval"),
    )
    robustness_size: int | None = Field(
        None, ge=1, description="Side Z of the robustness set's zeroed square; None takes the "
        "mask builder's erase size (20 when it has none).",
        json_schema_extra=affects("eval") | used_when("robustness", True),
    )
    robustness_margin_mm: float = Field(
        2.0, ge=0, allow_inf_nan=False, description="'robustness_near' counts the squares that "
        "touch the ground truth dilated by this many mm (most squares of a slice fall on "
        "background and change nothing).",
        json_schema_extra=affects("eval") | used_when("robustness", True),
    )
    context_margin_mm: float | None = Field(
        2.0, ge=0, allow_inf_nan=False, description="The context probe (the paper's Figure 1): "
        "every pixel farther than this many mm from the ground truth is set to the mask "
        "builder's fill value. None: no context probe.",
        json_schema_extra=affects("eval"),
    )
    reuse_standard: bool = Field(
        True, description="Reuse a finished standard phase whose key matches instead of "
        "retraining it (False retrains it, keeping the old one aside).",
        json_schema_extra=affects("none"),
    )
    control_steps: Literal["epochs", "matched"] = Field(
        "epochs", description="Default of the `none` control's `params.steps`: 'epochs' trains "
        "the same epochs on the conventional data (N images per epoch, the paper's design); "
        "'matched' shows the conventional data twice per epoch, the optimiser steps of an ADA "
        "branch (2N images). Both can be in one study: label one of them.",
        json_schema_extra=affects("none") | used_if(
            "an attributor takes it: the `none` control without `params.steps`", "registry"),
    )
    tensorboard: bool = Field(
        False, description="Also log each trained job's losses, validation metrics per epoch "
        "and its samples figure to TensorBoard, under <run>/tensorboard/ (needs the "
        "tensorboard package: pip install 'ada-seg[tensorboard]'). The run folder stays the "
        "record; this is a view of it.",
        json_schema_extra=affects("none"),
    )

    # --- checkpoint cadence (kept in its own block) ---------------------------------------
    checkpoint_every: int = Field(
        5, ge=1, description="Write `last.pt` (model, Adam and random state: everything to "
        "continue exactly) every this many epochs of a phase, and always at its last epoch. "
        "An interrupted job resumes from the last one written and trains the epochs since "
        "again, with the same result; 1 writes it every epoch (at paper size 58 MB, a "
        "noticeable part of a GPU epoch).",
        json_schema_extra=affects("none"),
    )
    # ---------------------------------------------------------------------------------------

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        dupes = sorted({s for s in seeds if seeds.count(s) > 1})
        if dupes:
            raise ValueError(f"seeds must be unique, {dupes} repeat(s)")
        return seeds

    @field_validator("device")
    @classmethod
    def _one_cpu(cls, device: str) -> str:
        # 'cpu:N' is the one CPU: spelled 'cpu', the CUDA-only fields' condition sees it too
        return "cpu" if re.fullmatch(r"cpu(:\d+)?", device) else device

    @field_validator("convergence_at")
    @classmethod
    def _positive_epochs(cls, epochs: list[int] | None) -> list[int] | None:
        if epochs is not None and any(e < 1 for e in epochs):
            raise ValueError(f"ADA epochs are counted from 1, got {epochs}")
        return None if epochs is None else sorted(set(epochs))

    @model_validator(mode="after")
    def _ensemble_alone(self) -> TrainConfig:
        if self.ensemble and self.ddp:
            raise ValueError("train.ensemble = true and train.ddp = true cannot be combined: an "
                             "ensemble trains a seed's branches in one process, DDP one job "
                             "over several; set one of them to false")  # fmt: skip
        if self.ensemble and self.compile != "off":
            raise ValueError(f"train.ensemble = true cannot be combined with train.compile = "
                             f"{self.compile!r} (the vmapped ensemble step is not compiled); "
                             "set train.compile = 'off' or train.ensemble = false")  # fmt: skip
        return self

    @property
    def study_seeds(self) -> list[int]:
        """The seeds of the study: ``seeds``, or ``[seed]`` when that is empty."""
        return list(self.seeds) or [self.seed]
