"""The processes of one study: which jobs each runs, how they agree, how a branch waits.

A study is a list of independent jobs (:func:`~ada_core.engine.jobs.plan_jobs`): each
replicate's standard phase, then its (replicate, branch) pairs. Three ways to run it:

- **one process** (``ada compare``): every job, in plan order;
- **torchrun** (``torchrun --nproc_per_node N -m ada_core.cli compare``, or any launcher that
  sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``): the
  processes form a gloo group for control messages only (a barrier, the preflight answer, the
  failures); rank ``r`` runs the jobs
  :func:`~ada_core.engine.schedule.assign` gives it, on ``cuda:LOCAL_RANK`` when the
  run is on CUDA;
- **shards** (``ada compare CONFIG --shard I/N`` on each machine of a job array): no process
  group at all; shard ``I`` runs exactly the jobs rank ``I`` would.

A branch whose standard phase another process runs polls for that phase's ``done.json``
(:func:`wait_for_standard`). Job folders are the only hand-off: a job computes the same thing
whichever process runs it. With ``train.ddp`` the processes instead run every job together,
data-parallel (:mod:`ada_core.engine.ddp`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist

from ada_core.runfolder import DoneRecord, FailedRecord, JobPaths, read_record
from ada_core.errors import AdaError, ConfigError, DataError
from ada_core.fieldtags import Unused

__all__ = [
    "Processes",
    "Remote",
    "StandardUnavailable",
    "check_processes",
    "launch_unused",
    "failed_stamp",
    "open_processes",
    "parse_shard",
    "wait_for_standard",
]

T = TypeVar("T")
Kind = Literal["single", "torchrun", "shard"]


class StandardUnavailable(AdaError):
    """A branch's standard phase, run by another process, failed or never finished."""


@dataclass
class Processes:
    """This process's place in the study.

    Attributes:
        kind: ``"single"``, ``"torchrun"`` (a process group) or ``"shard"`` (none).
        rank: index of this process (the shard index for shards).
        world: number of processes (shards).
        local_rank: index on this machine (torchrun's ``LOCAL_RANK``): the CUDA device.
        group: the gloo group of the control messages (torchrun only).
    """

    kind: Kind = "single"
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None
    _owns_group: bool = False

    @property
    def leader(self) -> bool:
        """Rank (shard) 0: writes the run's shared files."""
        return self.rank == 0

    @property
    def collective(self) -> bool:
        """True when the processes can talk (torchrun), False for one process or shards."""
        return self.kind == "torchrun"

    def name(self, rank: int | None = None) -> str:
        r = self.rank if rank is None else rank
        return f"shard {r}/{self.world}" if self.kind == "shard" else f"rank {r} of {self.world}"

    def barrier(self) -> None:
        if self.collective:
            dist.barrier(group=self.group)

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order (``[obj]`` without a process group)."""
        if not self.collective:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def agree(self, fn: Callable[[], T]) -> T:
        """Rank 0 runs ``fn``; every rank returns its result or raises its error.

        The other ranks wait until rank 0 has finished, so this is also a barrier: what rank
        0 does in ``fn`` (e.g. moving folders aside for ``--force``) is done before any rank
        goes on.
        """
        if not self.collective:
            return fn()
        box: list[Any] = [None]
        if self.leader:
            try:
                box[0] = ("ok", fn())
            except Exception as e:  # noqa: BLE001 - sent to every rank, raised there and here
                box[0] = ("error", _portable(e))
        dist.broadcast_object_list(box, src=0, group=self.group)
        status, value = box[0]
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling, else an AdaError with its message."""
    import pickle

    try:
        return pickle.loads(pickle.dumps(e))
    except Exception:  # noqa: BLE001 - whatever fails to pickle is sent as text
        return AdaError(f"{type(e).__name__}: {e}")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        ConfigError: anything else, saying what was expected.
    """
    parts = str(text).split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        index, count = -1, 0
    if len(parts) != 2 or count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"--shard {text}: expected I/N with 0 <= I < N (shard I of N, counted from 0), "
            "e.g. --shard 0/4 ... --shard 3/4"
        )
    return index, count


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def check_processes(shard: str | None, *, ddp: bool, given: Collection[str] = ()) -> None:
    """The checks of :func:`open_processes` that need no process group (for ``ada config
    validate`` and callers that must fail before writing anything).

    ``given``: the ``[train]`` keys the user set (``model_fields_set``); one that has no effect
    under how this run was started is refused, as any setting without effect (the config
    alone cannot tell: the same file runs under torchrun and alone).

    Raises:
        ConfigError: as :func:`open_processes`.
    """
    world = _env_int("WORLD_SIZE")
    if world is not None and world > 1:
        if shard is not None:
            raise ConfigError(
                f"--shard {shard} under torchrun ({world} processes): use one of the two, "
                "torchrun splits the jobs over its processes by itself"
            )
        return
    if ddp:
        how = f"with --shard {shard}" if shard is not None else "in a single process"
        raise ConfigError(
            f"train.ddp = true {how}: data-parallel training needs 2 or more processes "
            "started by torchrun, e.g. torchrun --nproc_per_node 2 -m ada_core.cli train "
            "CONFIG (or set train.ddp = false)"
        )
    if shard is not None:
        parse_shard(shard)
    unused = launch_unused(shard, given)
    if unused:
        lines = [f"  {u.message('train.')}" for u in unused]
        raise ConfigError("\n".join(["settings without effect in how this run was started:",
                                     *lines, "  (--set '~KEY' removes a KEY that the file sets)"]))


def launch_unused(shard: str | None, given: Collection[str]) -> list[Unused]:
    """The ``[train]`` keys of ``given`` that have no effect in a process not under torchrun
    (``shard``: its ``--shard``, or None when it runs alone)."""
    alone = "this run is one process (no torchrun, no --shard)"
    out = []
    if "ddp" in given:
        why = f"this run is {'--shard ' + shard if shard else 'one process'}, not under torchrun"
        out.append(Unused("ddp", None, why=why, fix="start it with torchrun --nproc_per_node N"))
    if "wait_timeout_h" in given and shard is None:
        out.append(Unused("wait_timeout_h", None, why=alone,
                          fix="start it with torchrun or as --shard I/N"))  # fmt: skip
    return out


def open_processes(shard: str | None, *, ddp: bool, device: str, timeout_h: float,
                   given: Collection[str] = ()) -> Processes:  # fmt: skip
    """Where this process stands: torchrun's environment, ``--shard``, or alone.

    Under torchrun (``WORLD_SIZE`` > 1) a run on CUDA makes ``cuda:LOCAL_RANK`` the current
    device (so ``train.device = 'auto'`` or ``'cuda'`` resolves to it), and the default
    process group is initialised from the environment: gloo, plus NCCL for the gradients of
    ``ddp`` on CUDA, with a timeout of ``timeout_h`` hours (a rank that finished early waits
    at the final barrier).

    Raises:
        ConfigError: ``--shard`` under torchrun; ``train.ddp`` without torchrun or with
            ``--shard``; a key of ``given`` without effect outside torchrun; a malformed
            ``--shard`` or rank environment; ``train.device`` naming one CUDA device for
            every rank; more local ranks than CUDA devices.
    """
    check_processes(shard, ddp=ddp, given=given)
    world = _env_int("WORLD_SIZE")
    if world is not None and world > 1:
        rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
        if rank is None or not 0 <= rank < world:
            raise ConfigError(f"RANK={os.environ.get('RANK')!r} with WORLD_SIZE={world}: "
                              "start the processes with torchrun (or set RANK per process)")  # fmt: skip
        local = rank if local is None else local
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            _use_local_gpu(device, local)
        owns = not dist.is_initialized()
        if owns:
            backend = "cpu:gloo,cuda:nccl" if (ddp and cuda) else "gloo"
            dist.init_process_group(backend, timeout=timedelta(hours=timeout_h))
        group = dist.new_group(backend="gloo", timeout=timedelta(hours=timeout_h))
        return Processes("torchrun", rank, world, local, group, owns)
    if shard is not None:
        index, count = parse_shard(shard)
        return Processes("shard", index, count, 0)
    return Processes()


def _use_local_gpu(device: str, local: int) -> None:
    if ":" in device:
        raise ConfigError(
            f"train.device = {device!r} under torchrun: each process uses cuda:LOCAL_RANK; set "
            "train.device = 'cuda' or 'auto'"
        )
    count = torch.cuda.device_count()
    if local >= count:
        raise ConfigError(
            f"LOCAL_RANK {local} but this machine has {count} CUDA device(s): start at most "
            f"{count} processes per node (torchrun --nproc_per_node {count})"
        )
    torch.cuda.set_device(local)


# --------------------------------------------------------------------------- waiting


@dataclass(frozen=True)
class Remote:
    """A standard phase another process runs: who runs it, and the :func:`failed_stamp` of
    its folder when this process started."""

    owner: str
    stale: tuple[int, int] | None


def failed_stamp(job: JobPaths) -> tuple[int, int] | None:
    """Identity of the job's ``failed.json`` (mtime, size), or None: tells a new failure from
    one that was already there when this process started."""
    try:
        st = job.failed.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


def wait_for_standard(
    standard: JobPaths,
    key: str,
    *,
    owner: str,
    timeout_s: float,
    stale: tuple[int, int] | None = None,
    poll_s: float = 5.0,
) -> None:
    """Block until the standard phase in ``standard`` has finished with ``key``.

    Args:
        standard: the standard phase's folder.
        key: its expected key (a ``done.json`` of other settings does not count).
        owner: who runs it, for messages (e.g. ``"shard 0/2"``).
        timeout_s: give up after this many seconds.
        stale: :func:`failed_stamp` taken when this process started: a ``failed.json``
            that was already there then belongs to an earlier attempt and is waited past.
        poll_s: longest pause between two looks (the first looks come faster).

    Raises:
        StandardUnavailable: a new ``failed.json`` appeared (with its error), or the time ran
            out (saying what to check and how to continue).
    """
    start = time.monotonic()
    pause = 0.05
    while True:
        try:
            done = read_record(standard.done, DoneRecord) if standard.done.is_file() else None
        except (DataError, OSError):  # mid-replace on a network file system: look again
            done = None
        if done is not None and done.key == key:
            return
        stamp = failed_stamp(standard)
        if stamp is not None and stamp != stale:
            try:
                error = read_record(standard.failed, FailedRecord).error
            except (DataError, OSError):
                error = "see its failed.json"
            raise StandardUnavailable(
                f"its standard phase ({standard.folder}, run by {owner}) failed: {error}"
            )
        waited = time.monotonic() - start
        if waited >= timeout_s:
            note = ""
            if stamp is not None:
                note = (" Its folder holds a failed.json from an earlier attempt: that process "
                        "retries it only when started with --resume.")  # fmt: skip
            raise StandardUnavailable(
                f"gave up after {waited / 3600:.2f} h waiting for its standard phase ({standard.folder}, "
                f"run by {owner}): no done.json appeared.{note} Check that process's log; once "
                "the standard phase has finished, run this one again with --resume "
                "(train.wait_timeout_h sets how long a branch waits)"
            )
        time.sleep(min(pause, poll_s, max(0.0, timeout_s - waited)))
        pause *= 2
