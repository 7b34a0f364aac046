"""The control: uniform random saliency, i.e. ADA with random erasing.

The paper compares interpretability methods but not against chance; with ``random`` the
window mask builder erases a random window, so a run shows whether the explanation matters at
all. The window is not uniform over positions: it is the best-scoring window of i.i.d. noise
outside the ground truth, so windows that overlap the ground truth (which count fewer pixels
under ``gt_policy = "restore"``) are chosen less often.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from ada_core import Attributor, ComponentConfig, SegModel

__all__ = ["RandomAttributor", "RandomConfig"]


class RandomConfig(ComponentConfig):
    """Settings of the random control."""

    seed: int | None = Field(
        None,
        description=(
            "Seed of the random saliency. None (default): derived from the run's seed "
            "(train.seed) and the branch label, so the run's seed alone replays it; an "
            "explicit value fixes the stream whatever the run's seed."
        ),
    )


class RandomAttributor(Attributor):
    """Uniform random saliency in [0, 1), independent of the model.

    Call ``k`` (counted from 0 per instance, see :attr:`calls`) draws from a CPU generator
    seeded with ``(seed, k)``, where ``seed`` is ``config.seed`` when set, else the last
    :meth:`set_seed` value (0 before any). A run is thus replayable from its seed and the call
    count, and identical on CPU and GPU. By design a sample's map depends on its position in
    the batch and on the call count (the contract's batch-independence and determinism checks
    are declared known gaps).
    """

    name = "random"
    Config: ClassVar[type[RandomConfig]] = RandomConfig
    config: RandomConfig
    control = True
    title = "random erasing"
    contract_xfail: ClassVar[dict[str, str]] = {
        "test_batch_independence": "by design: a sample's random map depends on its batch position",
        "test_deterministic": "by design: each call draws fresh noise (seeded by seed, call count)",
    }

    def __init__(self, config: RandomConfig | None = None) -> None:
        super().__init__(config)
        #: Number of calls so far; set it to replay a run from a given call (e.g. on resume).
        self.calls = 0
        self._run_seed = 0

    @property
    def seed(self) -> int:
        """The seed of the stream: ``config.seed`` when set, else the one from :meth:`set_seed`."""
        return self._run_seed if self.config.seed is None else self.config.seed

    def set_seed(self, seed: int) -> None:
        """Derive the stream from the run's ``seed`` (ignored when ``config.seed`` is set)."""
        self._run_seed = int(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state.get("calls", 0))

    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        # Modulo 2**63: any int seed (e.g. a hash from the engine) is a valid generator seed.
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.calls) % 2**63)
        self.calls += 1
        return torch.rand(images.shape, generator=gen).to(images.device)
