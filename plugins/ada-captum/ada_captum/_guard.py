"""Safety around an attribution pass: no leftover hooks, real guidance, the right layer.

:func:`attribution_guard` removes every hook added to the model during the pass (captum's
own included, even when it raises), switches in-place ``nn.ReLU`` modules to out-of-place
for the pass (backward hooks and saved layer activations break on in-place ops) and, for
guided methods, proves that ``nn.ReLU`` modules exist and actually run in ``forward``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ada_core.errors import ConfigError, ContractError, InputError, suggest

__all__ = ["ReluRule", "ReluSwitch", "attribution_guard", "resolve_layer"]

ReluRule = Literal["plain", "guided", "deconv"]

# Hook dictionaries of nn.Module and the companion dicts keyed by the same handle ids.
_HOOK_DICTS: dict[str, tuple[str, ...]] = {
    "_forward_hooks": ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"),
    "_forward_pre_hooks": ("_forward_pre_hooks_with_kwargs",),
    "_backward_hooks": (),
    "_backward_pre_hooks": (),
}

_NO_RELU = (
    "{owner}: model {model!r} {problem}, so {method} would silently equal vanilla gradients "
    "(guided methods change the backward pass of nn.ReLU modules only; torch.nn.functional.relu "
    "and other activations are not guided). Build the model with one nn.ReLU module per "
    "activation, or use the 'vanilla' attributor."
)


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", type(model).__name__))


class ReluSwitch:
    """Backward hooks on every ``nn.ReLU`` applying a switchable gradient rule.

    ``rule = "plain"`` leaves the gradient alone; ``"guided"`` passes only positive gradients
    through positive activations (``relu(grad_in)``, as captum's GuidedBackprop); ``"deconv"``
    passes positive gradients regardless of the activation (``relu(grad_out)``, captum's
    Deconvolution). One forward can then serve several backward passes with different rules.
    """

    def __init__(self, relus: list[nn.Module]) -> None:
        self.rule: ReluRule = "plain"
        for relu in relus:
            relu.register_full_backward_hook(self._hook)

    def _hook(
        self, module: nn.Module, grad_in: tuple[Tensor | None, ...], grad_out: tuple[Tensor, ...]
    ) -> tuple[Tensor | None, ...] | None:
        if self.rule == "guided":
            return tuple(None if g is None else F.relu(g) for g in grad_in)
        if self.rule == "deconv":
            return tuple(F.relu(g) for g in grad_out)
        return None


class _Tracker:
    """What the guard observed during the pass."""

    def __init__(self, relus: list[nn.Module]) -> None:
        self.relus = relus
        self.relu_calls = 0

    def count(self, *_: object) -> None:
        self.relu_calls += 1


@contextlib.contextmanager
def attribution_guard(
    model: nn.Module, owner: str, *, guided: str | None = None
) -> Iterator[_Tracker]:
    """Run an attribution pass on ``model`` safely.

    Args:
        model: the network; its hooks and ``nn.ReLU.inplace`` flags are restored on exit.
        owner: who is attributing, for error messages (e.g. ``"attributor 'gradcam'"``).
        guided: name of the guided method when the pass changes ReLU gradients (checks that
            ``nn.ReLU`` modules exist and run), else None.

    Raises:
        ContractError: ``guided`` is set and the model has no ``nn.ReLU`` module, or none of
            them ran during the pass.
    """
    modules = list(model.modules())
    relus = [m for m in modules if isinstance(m, nn.ReLU)]
    if guided and not relus:
        raise ContractError(
            _NO_RELU.format(
                owner=owner,
                model=_model_name(model),
                method=guided,
                problem="has no nn.ReLU modules",
            )
        )
    before = [{d: set(getattr(m, d, {})) for d in _HOOK_DICTS} for m in modules]
    inplace = [r.inplace for r in relus]
    tracker = _Tracker(relus)
    try:
        for relu in relus:
            relu.inplace = False
        if guided:
            for relu in relus:
                relu.register_forward_hook(tracker.count)
        yield tracker
        if guided and tracker.relu_calls == 0:
            raise ContractError(
                _NO_RELU.format(
                    owner=owner,
                    model=_model_name(model),
                    method=guided,
                    problem="has nn.ReLU modules but none of them ran in forward",
                )
            )
    finally:
        for relu, flag in zip(relus, inplace):
            relu.inplace = flag
        for module, keys in zip(modules, before):
            for name, companions in _HOOK_DICTS.items():
                hooks = getattr(module, name, None)
                if hooks is None:
                    continue
                for key in [k for k in hooks if k not in keys[name]]:
                    del hooks[key]
                    for companion in companions:
                        getattr(module, companion, {}).pop(key, None)


def resolve_layer(model: nn.Module, layer: str | None, owner: str) -> tuple[str, nn.Module]:
    """The GradCam layer: ``layer`` by name, or the model's ``default_attribution_layer``.

    Raises:
        InputError: the model has no ``attribution_layers()`` (it is not a SegModel).
        ConfigError: ``layer`` is not one of the model's attribution layers (lists them).
        ContractError: the model's declared default layer is not among its layers.
    """
    mname = _model_name(model)
    getter = getattr(model, "attribution_layers", None)
    if getter is None:
        raise InputError(
            f"{owner}: model {mname!r} ({type(model).__name__}) has no attribution_layers(); "
            "layer methods need an ada_core.interfaces.SegModel"
        )
    layers = dict(getter())
    if layer is not None:
        if layer not in layers:
            raise ConfigError(
                f"{owner}: layer {layer!r} is not an attribution layer of model {mname!r} "
                f"(params.layer). {suggest(layer, layers)}"
            )
        return layer, layers[layer]
    default = getattr(model, "default_attribution_layer", None)
    if default not in layers:
        raise ContractError(
            f"{owner}: model {mname!r} declares default_attribution_layer {default!r}, but its "
            f"attribution_layers() has no such layer. Fix the model, or set the attributor's "
            f"'layer' parameter. {suggest(str(default), layers)}"
        )
    return default, layers[default]


def check_layer_output(output: object, name: str, owner: str) -> Tensor:
    """Return the captured layer output, or raise ContractError if it is unusable for GradCam."""
    if output is None:
        raise ContractError(
            f"{owner}: attribution layer {name!r} did not run during forward; "
            "attribution_layers() must return sub-modules the model calls"
        )
    if not isinstance(output, Tensor) or output.ndim != 4:
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ContractError(
            f"{owner}: attribution layer {name!r} must output a (B, C, h, w) tensor, got {got}"
        )
    return output


def autocast(images: Tensor, amp: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast when ``amp`` and the images are on CUDA; otherwise a no-op."""
    if amp and images.is_cuda:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
