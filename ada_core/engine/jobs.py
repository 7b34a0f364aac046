"""Jobs of a study: ``Standard(replicate)`` and ``Branch(replicate, label)``.

A replicate is one (fold, seed). Each job owns one folder and writes nothing else:
``<run>/[<fold>/]seed-<s>/standard/`` or ``.../branches/<label>/``, holding

- ``key.json``: the job's key and the settings it was computed from;
- the phase files (:mod:`ada_core.engine.phase`);
- ``done.json`` (finished: where it ended, which checkpoint it scores) or ``failed.json``;
- ``eval/<eval key>/rows.csv`` and ``summary.json``: the scored sets of the selected checkpoint.

Before any work, :func:`inspect` sorts every planned job into new, finished, interrupted or
changed. A changed job (its key differs from the folder's) is refused with the difference
shown, unless ``force``; with ``force`` its folder is moved aside to ``<run>/.superseded/``,
never deleted.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ada_core.engine.checkpoint import load_checkpoint, previous_path, read_json, write_json
from ada_core.engine.keys import describe_diff, diff, digest
from ada_core.engine.plan import Branch, RunPlan
from ada_core.errors import ConfigError, DataError

__all__ = ["Job", "JobState", "Replicate", "inspect", "move_aside", "plan_jobs", "prepare_folder",
           "set_aside"]

State = Literal["new", "finished", "repair", "interrupted", "failed", "changed"]


@dataclass(frozen=True)
class Replicate:
    """One (fold, seed): its own standard phase and branches."""

    fold: str
    seed: int
    #: Person groups of the fold's parts (they are part of the standard key).
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.fold) / f"seed-{self.seed}" if self.fold else Path(f"seed-{self.seed}")

    @property
    def title(self) -> str:
        return f"seed {self.seed}" + (f", fold {self.fold}" if self.fold else "")


@dataclass(frozen=True)
class Job:
    replicate: Replicate
    branch: Branch | None  # None: the standard phase
    folder: Path
    key: str
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return "standard" if self.branch is None else self.branch.label

    @property
    def title(self) -> str:
        return f"{self.label} ({self.replicate.title})"

    def eval_key(self, plan: RunPlan) -> str:
        return digest({"job": self.key, "eval": plan.eval_settings})


def plan_jobs(plan: RunPlan, replicates: list[Replicate], fingerprint: str) -> list[Job]:
    """Every job of the study, the standard phase of each replicate before its branches."""
    jobs = []
    for rep in replicates:
        base = plan.run_dir / rep.path
        std_settings = {
            "settings": plan.standard_settings,
            "seed": rep.seed,
            "fold": {"name": rep.fold, "train": list(rep.train), "val": list(rep.val)},
            "data_fingerprint": fingerprint,
        }
        std_key = digest(std_settings)
        jobs.append(Job(rep, None, base / "standard", std_key, std_settings))
        for b in plan.branches:
            shared = dict(plan.branch_settings)
            if b.kind == "control":  # the keep-training control uses no mask builder
                shared.pop("mask", None)
                train = dict(shared.get("train", {}))
                train.pop("augment_ada_images", None)
                shared["train"] = train
            settings = {"standard": std_key, "branch": b.settings, "settings": shared}
            jobs.append(Job(rep, b, base / "branches" / b.label, digest(settings), settings))
    return jobs


@dataclass
class JobState:
    job: Job
    state: State
    detail: str = ""


def _state(job: Job) -> JobState:
    folder = job.folder
    key_file = folder / "key.json"
    if not key_file.is_file():
        has_work = (folder / "last.pt").is_file() or (folder / "done.json").is_file()
        if has_work:
            return JobState(job, "changed", "    (the folder has no key.json: it was not written "
                            "by this version of ADA)")  # fmt: skip
        return JobState(job, "new")
    old = read_json(key_file)
    if old.get("key") != job.key:
        rows = diff(old.get("settings", {}), job.settings)
        return JobState(job, "changed", describe_diff(rows) or "    (settings not recorded)")
    if (folder / "done.json").is_file():
        return JobState(job, "finished")
    if (folder / "failed.json").is_file():
        return JobState(job, "failed", read_json(folder / "failed.json").get("error", ""))
    if (folder / "last.pt").is_file():
        return JobState(job, "interrupted")
    return JobState(job, "new")


def move_aside(run_dir: Path, folder: Path, stamp: str | None = None) -> Path:
    """Move ``folder`` (inside ``run_dir``) to ``run_dir/.superseded/<stamp>/...``; never deletes.

    Raises:
        DataError: ``folder`` does not resolve inside ``run_dir``.
    """
    run_dir, folder = run_dir.resolve(), folder.resolve()
    if run_dir not in folder.parents:
        raise DataError(f"refusing to move {folder}: it is not inside the run folder {run_dir}")
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    target = run_dir / ".superseded" / stamp / folder.relative_to(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while target.exists():
        target = target.with_name(f"{target.name}.{n}")
        n += 1
    shutil.move(str(folder), str(target))
    return target


def _check_finished(js: JobState) -> str | None:
    """None when every file other jobs and the scoring need is readable, else the problem.

    A standard phase whose ``last.pt`` (the state every branch starts from) is unreadable but
    whose previous version is readable is marked ``repair``: its last epoch is trained again
    from that version, which gives the same weights.
    """
    folder = js.job.folder
    done = read_json(folder / "done.json")
    selected = folder / done.get("selected", "best.pt")
    try:
        load_checkpoint(selected, "cpu")
    except DataError as e:
        return str(e)
    if js.job.branch is None:
        try:
            load_checkpoint(folder / "last.pt", "cpu")
        except DataError as e:
            try:
                load_checkpoint(previous_path(folder / "last.pt"), "cpu")
            except DataError:
                return str(e)
            print(f"{js.job.title}: {e}; training its last epoch again from last.prev.pt",
                  flush=True)  # fmt: skip
            js.state = "repair"
    return None


def inspect(
    plan: RunPlan, jobs: list[Job], *, resume: bool, force: bool, reuse_standard: bool
) -> list[JobState]:
    """Classify every job before any work; refuse changed or interrupted work unless told.

    Raises:
        ConfigError: listing every job whose settings changed (with the differences) unless
            ``force``; every interrupted job unless ``resume`` or ``force``; every finished job
            whose checkpoints are unreadable.
    """
    states = [_state(j) for j in jobs]
    if not reuse_standard:
        for js in states:
            if js.job.branch is None and js.state == "finished":
                js.state, js.detail = "changed", "    train.reuse_standard = false"
    changed = [s for s in states if s.state == "changed"]
    if changed and not force:
        lines = [f"  {s.job.title} in {s.job.folder}:\n{s.detail}" for s in changed]
        raise ConfigError(
            f"run folder {plan.run_dir} holds results of other settings; refusing to mix or "
            "replace them:\n" + "\n".join(lines) + "\nGive the run another name (--set "
            "name=...), or pass --force to keep the old results aside in "
            f"{plan.run_dir / '.superseded'} and compute them again."
        )
    waiting = [s for s in states if s.state in ("interrupted", "failed")]
    if waiting and not (resume or force):
        lines = [f"  {s.job.title}: {s.state}" + (f" ({s.detail})" if s.detail else "") for s in waiting]
        raise ConfigError(
            f"run folder {plan.run_dir} holds unfinished work:\n" + "\n".join(lines) + "\n"
            "Continue it with --resume (nothing finished is redone), or pass --force to keep it "
            f"aside in {plan.run_dir / '.superseded'} and start those jobs afresh."
        )
    broken = []
    for js in states:
        if js.state == "finished":
            problem = _check_finished(js)
            if problem:
                broken.append(f"  {js.job.title}: {problem}")
    if broken:
        raise ConfigError(
            "finished jobs have unreadable checkpoints:\n" + "\n".join(broken) + "\nPass --force "
            f"to keep those folders aside in {plan.run_dir / '.superseded'} and train them again."
        )
    return states


def set_aside(plan: RunPlan, states: list[JobState], force: bool) -> None:
    """With ``force``: move every changed (and unfinished) job folder aside, under one stamp."""
    if not force:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for js in states:
        if js.job.folder.exists() and js.state in ("changed", "interrupted", "failed"):
            moved = move_aside(plan.run_dir, js.job.folder, stamp)
            print(f"{js.job.title}: old results kept aside in {moved}", flush=True)
            js.state = "new"


def prepare_folder(js: JobState) -> None:
    """Record the key of a job about to train (and set a previous failure's record aside)."""
    folder = js.job.folder
    if js.state != "finished":
        if (folder / "failed.json").is_file():
            os.replace(folder / "failed.json", folder / "failed.prev.json")
        write_json(folder / "key.json", {"key": js.job.key, "settings": js.job.settings})
