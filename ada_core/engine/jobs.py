"""Jobs of a study: ``Standard(replicate)`` and ``Branch(replicate, label)``.

A replicate is one (fold, seed). Each job owns one folder (:class:`~ada_core.runfolder.JobPaths`)
and writes nothing else. Before any work, :func:`inspect` sorts every planned job by what its
folder holds:

- ``new``; ``finished`` (reused); ``repair`` (finished, but its ``last.pt`` is damaged and its
  previous version is not, or there is none: the epochs since that version, or the whole
  phase, are trained again, with the same result);
- ``interrupted`` or ``failed``: continued only with ``--resume`` (or started afresh with
  ``--force``);
- ``rescore``: finished, but its scored rows are damaged: scored again with ``--resume``;
- ``changed`` (its key differs from the folder's) and ``broken`` (its ``done.json`` or a
  checkpoint it needs is damaged): refused with the reason, unless ``--force``, which keeps
  the old folder aside in ``<run>/.superseded/`` (never deletes) and trains it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ada_core.engine.keys import describe_diff, diff, digest
from ada_core.engine.plan import Branch, RunPlan
from ada_core.errors import ConfigError, DataError
from ada_core.runfolder import (
    RUN_FORMAT,
    DoneRecord,
    EvalSummary,
    FailedRecord,
    JobPaths,
    KeyRecord,
    RowsDigest,
    RunLayout,
    check_rows,
    keep_aside,
    move_aside,
    new_stamp,
    read_record,
    read_training_state,
    read_weights,
    write_record,
)

__all__ = ["Job", "JobState", "Replicate", "inspect", "plan_jobs", "prepare_folder", "set_aside"]

State = Literal["new", "finished", "repair", "rescore", "interrupted", "failed", "changed",
                "broken"]  # fmt: skip


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
    def title(self) -> str:
        return f"seed {self.seed}" + (f", fold {self.fold}" if self.fold else "")


@dataclass(frozen=True)
class Job:
    replicate: Replicate
    branch: Branch | None  # None: the standard phase
    paths: JobPaths
    key: str
    settings: dict[str, Any]

    @property
    def folder(self):  # noqa: ANN201 - a Path; shown in messages
        return self.paths.folder

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
    layout = RunLayout(plan.run_dir)
    jobs = []
    for rep in replicates:
        where = layout.replicate(rep.fold, rep.seed)
        std_settings = {
            "format": RUN_FORMAT,
            "settings": plan.standard_settings,
            "seed": rep.seed,
            "fold": {"name": rep.fold, "train": list(rep.train), "val": list(rep.val)},
            "data_fingerprint": fingerprint,
        }
        std_key = digest(std_settings)
        jobs.append(Job(rep, None, where.standard, std_key, std_settings))
        for b in plan.branches:
            shared = dict(plan.branch_settings)
            if b.new_attributor is None:  # a branch that erases nothing uses no mask builder
                shared.pop("mask", None)
                train = dict(shared.get("train", {}))
                train.pop("augment_ada_images", None)
                shared["train"] = train
            settings = {"standard": std_key, "branch": b.settings, "settings": shared}
            jobs.append(Job(rep, b, where.branch(b.label), digest(settings), settings))
    return jobs


@dataclass
class JobState:
    job: Job
    state: State
    detail: str = ""


def _state(job: Job) -> JobState:
    p = job.paths
    if not p.key.is_file():
        if p.last.is_file() or p.previous(p.last).is_file() or p.done.is_file():
            return JobState(job, "changed", "    (the folder has no key.json: it was not written "
                            "by this version of ADA)")  # fmt: skip
        return JobState(job, "new")
    try:
        old = read_record(p.key, KeyRecord)
    except DataError as e:
        return JobState(job, "broken", str(e))
    if old.key != job.key:
        return JobState(job, "changed", describe_diff(diff(old.settings, job.settings))
                        or "    (settings not recorded)")  # fmt: skip
    if p.done.is_file():
        try:
            read_record(p.done, DoneRecord)
        except DataError as e:
            return JobState(job, "broken", str(e))
        return JobState(job, "finished")
    if p.failed.is_file():
        try:
            return JobState(job, "failed", read_record(p.failed, FailedRecord).error)
        except DataError as e:
            return JobState(job, "failed", str(e))
    if p.last.is_file() or p.previous(p.last).is_file():
        return JobState(job, "interrupted")
    if p.metrics.is_file() and p.metrics.stat().st_size > 0:
        # epochs trained before its first last.pt (train.checkpoint_every): resuming trains
        # them again from the phase's start, with the same result
        return JobState(job, "interrupted")
    return JobState(job, "new")


def _check_finished(js: JobState, plan: RunPlan) -> None:
    """Mark a finished job ``broken``, ``repair`` or ``rescore`` when a file it needs is damaged.

    A standard phase whose ``last.pt`` (the state every branch starts from) is unreadable but
    whose previous version is readable is marked ``repair``: its last epoch is trained again
    from that version, which gives the same weights.
    """
    p = js.job.paths
    try:
        done = read_record(p.done, DoneRecord)
        read_weights(p.selected(done.selected))
    except DataError as e:
        js.state, js.detail = "broken", str(e)
        return
    if js.job.branch is None:
        try:
            read_training_state(p.last)
        except DataError as e:
            prev = p.previous(p.last)
            if not prev.is_file():  # one last.pt so far (train.checkpoint_every): from the start
                os.replace(p.last, p.damaged(p.last))
                print(f"{js.job.title}: {e}; kept as {p.damaged(p.last).name}, training the "
                      "phase again from its start (the same result)", flush=True)  # fmt: skip
                js.state = "repair"
                return
            try:
                read_training_state(prev)
            except DataError:
                js.state, js.detail = "broken", str(e)
                return
            print(f"{js.job.title}: {e}; training its last epoch(s) again from last.prev.pt",
                  flush=True)  # fmt: skip
            js.state = "repair"
            return
    ev = p.eval(js.job.eval_key(plan))
    if ev.summary.is_file():
        try:
            summary = read_record(ev.summary, EvalSummary)
            check_rows(ev, RowsDigest(summary.rows, summary.rows_sha256),
                       seed=js.job.replicate.seed, fold=js.job.replicate.fold, branch=js.job.label)  # fmt: skip
        except DataError as e:
            js.state, js.detail = "rescore", str(e)


def _refuse(plan: RunPlan, states: list[JobState], *, resume: bool, force: bool) -> None:
    aside = RunLayout(plan.run_dir).superseded
    changed = [s for s in states if s.state == "changed"]
    if changed and not force:
        lines = [f"  {s.job.title} in {s.job.folder}:\n{s.detail}" for s in changed]
        raise ConfigError(
            f"run folder {plan.run_dir} holds results of other settings; refusing to mix or "
            "replace them:\n" + "\n".join(lines) + "\nGive the run another name (--set "
            f"name=...), or pass --force to keep the old results aside in {aside} and compute "
            "them again."
        )
    broken = [s for s in states if s.state == "broken"]
    if broken and not force:
        lines = [f"  {s.job.title}: {s.detail}" for s in broken]
        raise ConfigError(
            "finished jobs have damaged files:\n" + "\n".join(lines) + f"\nPass --force to keep "
            f"those folders aside in {aside} and train them again."
        )
    waiting = [s for s in states if s.state in ("interrupted", "failed", "rescore")]
    if waiting and not (resume or force):
        lines = [f"  {s.job.title}: {s.state}" + (f" ({s.detail})" if s.detail else "") for s in waiting]
        raise ConfigError(
            f"run folder {plan.run_dir} holds unfinished work:\n" + "\n".join(lines) + "\n"
            "Continue it with --resume (nothing finished is redone; damaged scores are "
            f"computed again), or pass --force to keep it aside in {aside} and start those jobs "
            "afresh."
        )


def inspect(
    plan: RunPlan, jobs: list[Job], *, resume: bool, force: bool, reuse_standard: bool
) -> list[JobState]:
    """Classify every job before any work; refuse changed, damaged or unfinished work unless told.

    Raises:
        ConfigError: listing every job whose settings changed (with the differences) or whose
            files are damaged, unless ``force``; every interrupted or failed job, and every
            job whose scores are damaged, unless ``resume`` or ``force``.
    """
    states = [_state(j) for j in jobs]
    if not reuse_standard:
        for js in states:
            if js.job.branch is None and js.state == "finished":
                js.state, js.detail = "changed", "    train.reuse_standard = false"
    for js in states:
        if js.state == "finished":
            _check_finished(js, plan)
    _refuse(plan, states, resume=resume, force=force)
    return states


def set_aside(plan: RunPlan, states: list[JobState], *, resume: bool, force: bool) -> None:
    """Move aside what will be computed again, under one stamp, never deleting anything.

    With ``force``: every changed, damaged or unfinished job folder, with the run-level files
    (:func:`~ada_core.runfolder.keep_aside`). With ``resume`` (or ``force``): the damaged
    scores of a finished job, which is then scored again.
    """
    layout = RunLayout(plan.run_dir)
    stamp = new_stamp()
    for js in states:
        if js.state == "rescore" and (resume or force):
            moved = move_aside(layout, js.job.paths.eval(js.job.eval_key(plan)).folder, stamp)
            print(f"{js.job.title}: damaged scores kept aside in {moved}; scoring again", flush=True)
            js.state = "finished"
    if not force:
        return
    moving = [js for js in states if js.state in ("changed", "broken", "interrupted", "failed")]
    if not moving:
        return
    aside = keep_aside(layout, [js.job.paths for js in moving], stamp)
    for js in moving:
        print(f"{js.job.title}: old results kept aside in {aside / js.job.paths.rel}", flush=True)
        js.state = "new"


def prepare_folder(js: JobState) -> None:
    """Record the key of a job about to train (and set a previous failure's record aside)."""
    p = js.job.paths
    if js.state != "finished":
        if p.failed.is_file():
            os.replace(p.failed, p.failed_prev)
        write_record(p.key, p.root, KeyRecord(key=js.job.key, settings=js.job.settings))
