"""Make a third-party network safe for guided attribution: one non-inplace ``nn.ReLU`` per use.

Guided Backprop (and Guided GradCam) hook ``nn.ReLU`` modules. Two habits of common model
code break them: in-place ReLUs (a backward hook on an in-place op errors or sees the wrong
tensor) and one ReLU module called several times (torchvision's ``BasicBlock`` /
``Bottleneck`` call ``self.relu`` two or three times; a per-module hook then fires for the
wrong call). :func:`make_relus_distinct` fixes both in place:

1. every ``nn.ReLU`` gets ``inplace=False``;
2. a probe forward pass counts the calls of every ReLU module;
3. the owner of a ReLU called more than once is re-traced with ``torch.fx`` and every call
   after the first is pointed at a fresh ``nn.ReLU`` (``relu``, ``relu_use2``, ...); parameter
   names, and so state dicts, are unchanged;
4. a second probe checks that every ReLU now runs at most once, and counts relus applied
   without a module (functional ``F.relu``), which no module hook can see.

It also reports activations that guided methods do not modify (``ReLU6``, ``SiLU``,
``GELU``, ...): on such layers Guided Backprop equals vanilla gradients.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ada_core import ConfigError

__all__ = ["GuidedReport", "count_relu_calls", "make_relus_distinct"]

_OTHER_ACTIVATIONS = (
    nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Tanh,
)

_RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_}


@dataclass(frozen=True)
class GuidedReport:
    """What :func:`make_relus_distinct` did and found.

    Attributes:
        relus: number of ``nn.ReLU`` modules after the fix.
        made_not_inplace: ReLUs that were in-place.
        split: names of ReLU modules that were called several times and were split.
        other_activations: counts of non-ReLU activation module types (guided methods
            leave them untouched).
        functional_relus: relu calls made without an ``nn.ReLU`` module (guided methods
            cannot see them).
    """

    relus: int
    made_not_inplace: int
    split: tuple[str, ...]
    other_activations: dict[str, int]
    functional_relus: int = 0


class _CountRelu(TorchFunctionMode):
    """Counts relu calls made through torch functions (modules and functional code alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in _RELU_FUNCTIONS:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def count_relu_calls(model: nn.Module, example: Tensor) -> tuple[Counter[str], int]:
    """Calls of every ``nn.ReLU`` module (by qualified name) in one forward of ``example``.

    Runs in eval mode under ``torch.no_grad`` and restores the model's mode.

    Returns:
        The calls per ReLU module and the number of relu calls made without a module
        (functional ``F.relu`` / ``torch.relu`` / ``Tensor.relu``).
    """
    calls: Counter[str] = Counter()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            calls[name] = 0
            handles.append(
                module.register_forward_hook(lambda m, i, o, name=name: calls.update([name]))
            )
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _CountRelu() as counter:
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return calls, counter.calls - sum(calls.values())


def _split_reused(owner: nn.Module, owner_name: str, attrs: set[str]) -> nn.Module:
    """An fx-retraced copy of ``owner`` in which each call of ``attrs`` has its own ReLU."""
    try:
        traced = torch.fx.symbolic_trace(owner)
    except Exception as e:  # fx raises many types on untraceable control flow
        raise ConfigError(
            f"module {owner_name!r} ({type(owner).__name__}) calls the ReLU(s) "
            f"{sorted(attrs)} more than once and cannot be re-traced to give each call its own "
            f"nn.ReLU ({type(e).__name__}: {e}); build the model with guided_safe=False "
            "(Guided Backprop is then wrong on this network) or choose another encoder"
        ) from e
    uses: Counter[str] = Counter()
    for node in traced.graph.nodes:
        if node.op == "call_module" and node.target in attrs:
            uses[node.target] += 1
            if uses[node.target] > 1:
                new = f"{node.target}_use{uses[node.target]}"
                traced.add_submodule(new, nn.ReLU())
                node.target = new
    traced.recompile()
    return traced


def make_relus_distinct(model: nn.Module, example: Tensor) -> GuidedReport:
    """Give every ReLU call of ``model`` its own non-inplace ``nn.ReLU`` module, in place.

    Args:
        model: the network; modified in place.
        example: an input ``model`` accepts, e.g. ``(1, 1, 64, 64)``; used for two probe
            forward passes (eval mode, no gradients).

    Returns:
        A :class:`GuidedReport`.

    Raises:
        ConfigError: a reused ReLU whose owner cannot be re-traced, or a ReLU still called
            more than once after the fix (called from outside its owner).
    """
    inplace = 0
    for module in model.modules():
        if isinstance(module, nn.ReLU) and module.inplace:
            module.inplace = False
            inplace += 1
    reused = [name for name, n in count_relu_calls(model, example)[0].items() if n > 1]
    by_owner: dict[str, set[str]] = {}
    for name in reused:
        owner, _, attr = name.rpartition(".")
        by_owner.setdefault(owner, set()).add(attr)
    for owner_name, attrs in by_owner.items():
        if not owner_name:
            raise ConfigError(
                f"the top-level module calls the ReLU(s) {sorted(attrs)} more than once; "
                "build the model with guided_safe=False"
            )
        owner = model.get_submodule(owner_name)
        parent_name, _, child = owner_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _split_reused(owner, owner_name, attrs))
    calls, functional = count_relu_calls(model, example)
    still = sorted(name for name, n in calls.items() if n > 1)
    if still:
        raise ConfigError(
            f"ReLU modules {still} are still called more than once (they are called from "
            "outside the module that owns them); build the model with guided_safe=False"
        )
    others = Counter(
        type(m).__name__ for m in model.modules() if isinstance(m, _OTHER_ACTIVATIONS)
    )
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    return GuidedReport(relus, inplace, tuple(sorted(reused)), dict(others), functional)
