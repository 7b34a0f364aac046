"""A chain of SIGKILLs at random moments, then a run to the end (test_reliability.py).

Usage: ``python kill_chain.py CONFIG REFERENCE_CONFIG KILLS SEED OUT.json``

One process imports torch once and forks a child per attempt, so an attempt starts in
milliseconds and a kill lands anywhere in the work: planning, data loading, training, a
checkpoint write, scoring, aggregation. Each attempt runs ``run_study(..., resume=True)`` (what
``ada compare --resume`` does); the parent kills it with SIGKILL after a delay drawn from a
seeded generator, until KILLS kills have landed, then lets one attempt finish. The reference
study runs the same way without kills, in the same process configuration (one thread), so any
difference comes from the interruptions alone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time


def _child(config: str, registry) -> None:  # noqa: ANN001
    from ada_core.config import load_config
    from ada_core.engine import run_study

    code = 1
    try:
        run_study(load_config(config), registry, resume=True, quiet=True)
        code = 0
    finally:
        os._exit(code)


def _attempt(config: str, registry, delay: float | None) -> str:  # noqa: ANN001
    """'killed', 'finished' or 'failed'."""
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        _child(config, registry)
    if delay is not None:
        end = time.monotonic() + delay
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return "finished" if os.waitstatus_to_exitcode(status) == 0 else "failed"
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "killed" if code == -signal.SIGKILL else "finished" if code == 0 else "failed"


def main() -> None:
    config, reference, kills, seed, out = sys.argv[1:6]
    import torch

    torch.set_num_threads(1)
    from ada_core.plugins import load_plugins

    registry = load_plugins()
    rng = random.Random(int(seed))
    outcomes = []
    while outcomes.count("killed") < int(kills):
        outcome = _attempt(config, registry, rng.uniform(0.05, 0.6))
        outcomes.append(outcome)
        if outcome != "killed":
            break
    outcomes.append(_attempt(config, registry, None))
    ref = _attempt(reference, registry, None)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"outcomes": outcomes, "reference": ref}, f)


if __name__ == "__main__":
    main()
