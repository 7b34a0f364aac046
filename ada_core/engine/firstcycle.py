"""Cycle 1's saliency for every branch of a seed at once: one shared pass from the standard
weights.

Every ADA branch of a replicate starts its first cycle from the same weights (its standard
phase's ``last.pt``) and attributes the same training images, so their first-cycle maps can
come from one :func:`~ada_core.attribution.attribute_all` call, which shares forward and
backward passes between methods of one share group (vanilla, input x gradient, GradCam, ...).
The maps are the same as each branch's own pass (tested bit for bit); the keep masks are then
built by each branch, batch by batch, as before.

Only fresh branches take part (a resumed one reads its masks from disk or continues from its
own checkpoint), only attributors without a random stream (an empty ``state_dict()``: a
random control draws from its own stream and costs nothing to recompute), and only in one
process per job (under DDP each branch shares its attribution over the ranks instead).
"""

from __future__ import annotations

from collections import Counter

from ada_core.attribution import attribute_all
from ada_core.data import SliceSet
from ada_core.engine.cycle import Saliency
from ada_core.engine.jobs import JobState
from ada_core.engine.keys import derive_seed
from ada_core.engine.phase import Phase, fresh_state
from ada_core.engine.plan import RunPlan
from ada_core.errors import AdaError
from ada_core.runfolder import JobPaths

__all__ = ["shared_first_cycle"]


def _takes_part(plan: RunPlan, js: JobState, phase: Phase) -> bool:
    return (js.state == "new" and plan.schedule.cycles > 0 and plan.runtime.ddp is None
            and phase.attributor is not None and phase.mask is not None
            and phase.start is not None)  # fmt: skip


def shared_first_cycle(plan: RunPlan, branches: list[tuple[JobState, Phase]],
                       train: SliceSet) -> dict[JobPaths, Saliency]:  # fmt: skip
    """First-cycle saliency of the branches of one replicate that can share a pass.

    Args:
        branches: the replicate's branch jobs with the phases they will train (the
            attributors of these phases are the ones seeded here, as the phase would).
        train: the replicate's training slices.

    Returns:
        job folder -> its maps and counters; empty when fewer than two branches take part or
        the shared pass fails (each branch then attributes, and fails, on its own).
    """
    members = [(js, ph) for js, ph in branches if _takes_part(plan, js, ph)]
    if not members:
        return {}
    state = fresh_state(members[0][1], plan.new_model, plan.schedule, plan.runtime)
    attributors = {}
    for _, ph in members:
        ph.attributor.set_seed(derive_seed(ph.seed, "attributor", ph.label))  # as fresh_state
        if not ph.attributor.state_dict():  # deterministic: nothing carried between calls
            attributors[ph.paths] = ph.attributor
    if len(attributors) < 2:
        return {}
    before = {k: Counter(a.counters) for k, a in attributors.items()}
    try:
        maps = attribute_all(attributors, state.model, train.images, train.masks,
                             batch_size=plan.schedule.eval_batch_size)  # fmt: skip
    except AdaError:
        return {}
    finally:
        for key, a in attributors.items():
            added = Counter(a.counters)
            added.subtract(before[key])
            a.counters.clear()
            a.counters.update(before[key])
            before[key] = added
    return {k: Saliency(maps[k], before[k]) for k in attributors}
