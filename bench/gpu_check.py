"""The Python steps of ``bench/gpu_check.sh``: what it installs, which tests it runs, what it
reads back from the run folder and the one JSON file it writes.

    python bench/gpu_check.py requirements          # what pyproject.toml asks for
    python bench/gpu_check.py requirements --closure   # pinned, with their dependencies
    python bench/gpu_check.py installed             # every one of them importable here?
    python bench/gpu_check.py cuda-tests            # node ids of the tests that need CUDA
    python bench/gpu_check.py suite JUNIT.xml OUT.json   # fails when no test ran or one failed
    python bench/gpu_check.py demo RUN OUT.json     # epoch seconds and img/s of every seed
    python bench/gpu_check.py merge OUT             # $OUT/gpu_check.json from the steps' files

Requirements come from the ``pyproject.toml`` files of ada-seg and its first-party plugins
(their ``dependencies`` and the ``test`` extra), never from a typed list, so a dependency
added there travels to the GPU machine without touching this script. ``torch`` is left out:
the GPU machine has its own CUDA build.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("plugins/ada-captum", "plugins/ada-scgm", "plugins/ada-unet")
#: Provided by the GPU machine (its CUDA build), never shipped as a wheel.
PROVIDED = {"torch", "torchvision", "nvidia", "triton"}


def _name(spec: str) -> str:
    for stop in "<>=!~[; ":
        spec = spec.split(stop)[0]
    return spec.strip().lower().replace("_", "-")


def requirements() -> list[str]:
    """Third-party requirement specs of ada-seg + plugins (dependencies and ``test`` extra)."""
    first_party, specs = set(), []
    for folder in (".", *PLUGINS):
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        first_party.add(_name(project["name"]))
        specs += project.get("dependencies", []) + project.get("optional-dependencies", {}).get("test", [])
    out, seen = [], set()
    for spec in specs:
        name = _name(spec)
        if name in first_party or name in PROVIDED or name in seen:
            continue
        seen.add(name)
        out.append(spec.strip())
    return out


def closure() -> list[str]:
    """``name==version`` of the requirements and, transitively, what they require, as
    installed in this interpreter (the list ``pip download --no-deps`` fetches)."""
    from packaging.requirements import Requirement

    todo, pinned = [_name(spec) for spec in requirements()], {}
    while todo:
        name = todo.pop()
        if name in pinned or name in PROVIDED or name.startswith("nvidia-"):
            continue
        dist = md.distribution(name)
        pinned[name] = f"{name}=={dist.version}"
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_name(req.name))
    return sorted(pinned.values())


def missing() -> list[str]:
    """The requirements not installed in this interpreter (by distribution metadata)."""
    gone = []
    for spec in requirements():
        try:
            md.version(_name(spec))
        except md.PackageNotFoundError:
            gone.append(spec)
    return gone


def cuda_tests() -> list[str]:
    """Node ids of the tests in tests/ that mention ``torch.cuda`` (skip marks or bodies)."""
    ids = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if "cuda" in ast.unparse(node).lower():
                    ids.append(f"tests/{path.name}::{node.name}")
    return ids


def suite(junit: Path) -> dict:
    """Counts from a pytest JUnit file; SystemExit when no test ran or one failed."""
    root = ET.parse(junit).getroot()
    cases = root.iter("testcase")
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            counts["failed"] += 1
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    if counts["failed"]:
        raise SystemExit(f"gpu_check: {counts['failed']} test(s) failed ({junit})")
    if counts["passed"] == 0:
        raise SystemExit(f"gpu_check: the suite ran no test ({counts['skipped']} skipped, {junit}): "
                         "a check that ran nothing is a failed check")  # fmt: skip
    return counts


def demo(run: Path) -> dict:
    """Every job's epoch seconds and img/s, found through the run-folder layout and summary."""
    from ada_core.runfolder.epochs import read_epochs
    from ada_core.runfolder.layout import RunLayout
    from ada_core.runfolder.summary import read_summary

    layout = RunLayout(run)
    summary = read_summary(layout)
    jobs = {}
    for job in summary.jobs:
        records, _ = read_epochs(layout.job(job.path).metrics)
        jobs[job.path] = {"epoch_s": [r.seconds for r in records],
                          "images_per_s": [r.images_per_s for r in records]}  # fmt: skip
    standard = [p for p in jobs if layout.job(p).is_standard]
    if not standard or not all(jobs[p]["epoch_s"] for p in standard):
        raise SystemExit(f"gpu_check: {run} has no standard phase with epochs")
    return {"seconds": float(summary.seconds), "seeds": summary.seeds, "standard": standard, "jobs": jobs}


def merge(out: Path) -> dict:
    """``gpu_check.json``: the engine bench's figures, the suite's counts and the demo's."""
    figures = json.loads((out / "engine.json").read_text())
    figures["suite"] = json.loads((out / "suite.json").read_text())
    figures["demo"] = json.loads((out / "demo.json").read_text())
    if (out / "ensemble.json").is_file():  # bench_ensemble.py: train.ensemble's epoch
        figures["ensemble"] = json.loads((out / "ensemble.json").read_text())
    for key in ("ada_cycle_fraction", "seed_minutes"):
        if not figures[key] > 0:
            raise SystemExit(f"gpu_check: {key} = {figures[key]!r}, expected a positive number")
    if not figures["raw_step_img_s"] or not all(v > 0 for v in figures["raw_step_img_s"].values()):
        raise SystemExit(f"gpu_check: raw_step_img_s = {figures['raw_step_img_s']!r}")
    (out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
    return figures


def main(argv: list[str]) -> None:
    cmd, *rest = argv
    if cmd == "requirements":
        print("\n".join(closure() if rest == ["--closure"] else requirements()))
    elif cmd == "installed":
        if gone := missing():
            raise SystemExit(f"gpu_check: not installed: {gone}; put their wheels in .whl/ "
                             "(see the head of bench/gpu_check.sh)")  # fmt: skip
        print(f"all {len(requirements())} requirements installed")
    elif cmd == "cuda-tests":
        print("\n".join(cuda_tests()))
    elif cmd == "suite":
        counts = suite(Path(rest[0]))
        Path(rest[1]).write_text(json.dumps(counts))
        print("suite:", counts)
    elif cmd == "demo":
        figures = demo(Path(rest[0]))
        Path(rest[1]).write_text(json.dumps(figures))
        for path in figures["standard"]:
            r = figures["jobs"][path]
            print(f"{path} epoch s:", [round(x, 2) for x in r["epoch_s"]],
                  "img/s:", [round(x or 0) for x in r["images_per_s"]])
        print("summary seconds:", round(figures["seconds"], 1))
    elif cmd == "merge":
        figures = merge(Path(rest[0]))
        keys = ("raw_step_img_s", "ada_cycle_fraction", "seed_minutes", "ensemble")
        print(json.dumps({k: figures[k] for k in keys if k in figures}))
    else:
        raise SystemExit(f"gpu_check.py: unknown step {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
