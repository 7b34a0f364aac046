"""Which process runs which job: estimated job costs and the list schedule every rank and
every shard computes alike (used by :mod:`ada_core.engine.preflight`; see
:mod:`ada_core.engine.distributed` for the processes themselves)."""

from __future__ import annotations

from collections.abc import Sequence

from ada_core.engine.jobs import Job
from ada_core.engine.plan import RunPlan
from ada_core.errors import ConfigError
from ada_core.runfolder import JobPaths

__all__ = ["assign", "job_cost"]


def job_cost(plan: RunPlan, job: Job, n_train: int) -> float:
    """Estimated work of ``job`` in images through the network (forward + backward).

    An attribution pass counts as one training image per slice; scoring is left out (it is
    the same for every job).
    """
    s = plan.schedule
    if job.branch is None:
        return float(s.standard_epochs * n_train)
    epochs = s.cycles * s.ada_epochs
    if job.branch.kind == "control":
        return float(epochs * n_train * job.branch.repeat)
    return float(epochs * 2 * n_train + s.cycles * n_train)


def assign(jobs: Sequence[Job], costs: Sequence[float], world: int) -> list[list[int]]:
    """Indices of the jobs each of ``world`` processes runs, in the order it runs them.

    List scheduling on estimated costs: every standard phase first (in plan order), then the
    branches longest first; each job goes to the process that can start it earliest (a branch
    not before its standard phase's estimated end; ties to the lowest rank). Standard phases
    come first in every process's list, so a process never waits on a branch, and no two
    processes can wait on each other. The result depends on the plan only (never on what the
    run folder holds), so every rank and every shard computes the same split.

    Raises:
        ConfigError: more processes than jobs, or fewer than one.
    """
    if world < 1:
        raise ConfigError(f"the study needs at least one process, got {world}")
    if world > len(jobs):
        raise ConfigError(
            f"{world} processes for {len(jobs)} jobs: {world - len(jobs)} would have nothing to "
            f"do; start at most {len(jobs)} (torchrun --nproc_per_node, --shard I/N), or use "
            "train.ddp = true to train each job on several processes"
        )
    free = [0.0] * world
    finish: dict[JobPaths, float] = {}
    out: list[list[int]] = [[] for _ in range(world)]
    standards = [i for i, j in enumerate(jobs) if j.branch is None]
    branches = sorted((i for i, j in enumerate(jobs) if j.branch is not None),
                      key=lambda i: -costs[i])  # fmt: skip
    for i in standards + branches:
        job = jobs[i]
        std = job.paths.standard
        ready = 0.0 if job.branch is None else finish.get(std, 0.0)
        rank = min(range(world), key=lambda r: (max(free[r], ready), r))
        free[rank] = max(free[rank], ready) + costs[i]
        if job.branch is None:
            finish[job.paths] = free[rank]
        out[rank].append(i)
    return out
