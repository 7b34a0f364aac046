"""``--force``: old results kept aside in ``<run>/.superseded/<time>/``, never deleted.

What is set aside is itself a run folder: the job folders being replaced are moved there, and
so are the run-level files (config, study.json, results.csv, summary, report) that describe
them; every other finished job of the old study is linked in (checkpoints as hard links, which
the engine never modifies in place, small files copied), so ``ada aggregate`` and ``ada
report`` work on the superseded folder as they did on the run before ``--force``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from ada_core.errors import DataError
from ada_core.runfolder.layout import JobPaths, RunLayout
from ada_core.runfolder.records import StudyRecord, read_record

__all__ = ["keep_aside", "move_aside", "new_stamp"]


def new_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _target(layout: RunLayout, path: Path, stamp: str) -> Path:
    root, real = layout.root.resolve(), path.resolve() if not path.is_symlink() else path.absolute()
    if root not in real.parents:
        raise DataError(f"refusing to move {path}: it is not inside the run folder {root}")
    target = RunLayout(root).superseded / stamp / real.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while target.exists():
        target = target.with_name(f"{target.name}.{n}")
        n += 1
    return target


def move_aside(layout: RunLayout, path: Path, stamp: str | None = None) -> Path:
    """Move ``path`` (a file or folder inside the run) into ``.superseded/<stamp>/``.

    Raises:
        DataError: ``path`` does not lie inside the run folder.
    """
    target = _target(layout, Path(path), stamp or new_stamp())
    shutil.move(str(path), str(target))
    return target


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of ``src``: ``.pt`` files hard-linked (replaced, never rewritten in
    place, by the engine), everything else copied; links in ``src`` are not followed."""
    for folder, dirs, files in os.walk(src, followlinks=False):
        here = dst / Path(folder).relative_to(src)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            s, d = Path(folder) / name, here / name
            if s.is_symlink() or name == ".lock":
                continue
            try:
                if s.suffix == ".pt":
                    os.link(s, d)
                    continue
            except OSError:  # another file system, or no hard links: copy instead
                pass
            shutil.copy2(s, d)


def keep_aside(layout: RunLayout, jobs: Sequence[JobPaths], stamp: str | None = None) -> Path:
    """Set ``jobs`` aside with the run-level files; link the old study's other jobs in.

    Returns:
        The superseded folder ``<run>/.superseded/<stamp>``.
    """
    stamp = stamp or new_stamp()
    old: StudyRecord | None = None
    if layout.study.is_file():
        try:
            old = read_record(layout.study, StudyRecord)
        except DataError:
            old = None  # a damaged study.json is moved aside as it is
    moving = {j.rel for j in jobs}
    for job in jobs:
        if job.folder.exists():
            move_aside(layout, job.folder, stamp)
    for path in layout.run_files:
        if path.is_file() or path.is_symlink():
            move_aside(layout, path, stamp)
    aside = RunLayout(layout.superseded / stamp)
    for rel in sorted({layout.job(j.path).rel for j in old.jobs} if old else set()):
        src = layout.root / rel
        if rel not in moving and src.is_dir() and not (aside.root / rel).exists():
            _link_tree(src, aside.root / rel)
    return aside.root
