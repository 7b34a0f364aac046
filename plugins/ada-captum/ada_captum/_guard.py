"""Safety around an attribution pass: hooks through handles, real guidance, the right layer.

:func:`attribution_pass` yields a :class:`Pass` that registers every hook the pass needs and
removes each through its handle when the pass ends (also when it raises). It switches in-place
``nn.ReLU`` modules to out-of-place for the pass (backward hooks and saved layer activations
break on in-place ops) and, for guided methods, proves that ``nn.ReLU`` modules exist and
actually run in ``forward``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ada_core import ConfigError, ContractError, InputError, suggest

__all__ = ["Pass", "ReluRule", "attribution_pass", "autocast", "check_layer_output", "resolve_layer"]

ReluRule = Literal["plain", "guided", "deconv"]

_NO_RELU = (
    "{owner}: model {model!r} {problem}, so {method} would silently equal vanilla gradients "
    "(guided methods change the backward pass of nn.ReLU modules only; torch.nn.functional.relu "
    "and other activations are not guided). Build the model with one nn.ReLU module per "
    "activation, or use the 'vanilla' attributor."
)


def model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", type(model).__name__))


def no_relu_message(owner: str, model: nn.Module, method: str, problem: str) -> str:
    return _NO_RELU.format(owner=owner, model=model_name(model), method=method, problem=problem)


class Pass:
    """Hooks of one attribution pass, each removed through its handle when the pass ends.

    ``rule`` is the gradient rule the ReLU hooks apply (after :meth:`switch_relus`):
    ``"plain"`` leaves the gradient alone; ``"guided"`` passes only positive gradients through
    positive activations (``relu(grad_in)``, as captum's GuidedBackprop); ``"deconv"`` passes
    positive gradients regardless of the activation (``relu(grad_out)``, captum's
    Deconvolution). One forward can then serve several backward passes with different rules.
    """

    def __init__(self, relus: list[nn.Module], stack: contextlib.ExitStack) -> None:
        self.relus = relus
        self.rule: ReluRule = "plain"
        self.relu_calls = 0
        self._stack = stack

    def keep(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        """Remove ``handle`` when the pass ends."""
        self._stack.enter_context(handle)

    def capture(self, layers: dict[str, nn.Module], *, leaf: bool = False) -> dict[str, Tensor]:
        """Outputs of ``layers`` (name -> module) in the coming forward, by name.

        With ``leaf``, each output is replaced by a detached copy that requires grad, so the
        forward continues from it and a backward ends there (nothing upstream is computed).
        """
        captured: dict[str, Tensor] = {}

        def hook(module: nn.Module, inputs: object, output: object, name: str) -> object:
            if leaf and isinstance(output, Tensor):
                output = output.detach().requires_grad_(True)
            captured[name] = output  # type: ignore[assignment]
            return output

        for name, module in layers.items():
            self.keep(module.register_forward_hook(functools.partial(hook, name=name)))
        return captured

    def switch_relus(self) -> None:
        """Apply :attr:`rule` in the backward of every ``nn.ReLU`` from now on."""
        for relu in self.relus:
            self.keep(relu.register_full_backward_hook(self._relu_backward))

    def _count(self, *_: object) -> None:
        self.relu_calls += 1

    def _relu_backward(
        self, module: nn.Module, grad_in: tuple[Tensor | None, ...], grad_out: tuple[Tensor, ...]
    ) -> tuple[Tensor | None, ...] | None:
        if self.rule == "guided":
            return tuple(None if g is None else F.relu(g) for g in grad_in)
        if self.rule == "deconv":
            return tuple(F.relu(g) for g in grad_out)
        return None


@contextlib.contextmanager
def attribution_pass(model: nn.Module, owner: str, *, guided: str | None = None) -> Iterator[Pass]:
    """Run an attribution pass on ``model`` safely.

    Args:
        model: the network; its ``nn.ReLU.inplace`` flags are restored and the pass's hooks
            removed on exit.
        owner: who is attributing, for error messages (e.g. ``"attributor 'gradcam'"``).
        guided: name of the guided method when the pass changes ReLU gradients (checks that
            ``nn.ReLU`` modules exist and run), else None.

    Raises:
        ContractError: ``guided`` is set and the model has no ``nn.ReLU`` module, or none of
            them ran during the pass.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if guided and not relus:
        raise ContractError(no_relu_message(owner, model, guided, "has no nn.ReLU modules"))
    with contextlib.ExitStack() as stack:
        for relu in relus:
            stack.callback(setattr, relu, "inplace", relu.inplace)
            relu.inplace = False
        p = Pass(relus, stack)
        if guided:
            for relu in relus:
                p.keep(relu.register_forward_hook(p._count))
        yield p
        if guided and p.relu_calls == 0:
            problem = "has nn.ReLU modules but none of them ran in forward"
            raise ContractError(no_relu_message(owner, model, guided, problem))


def resolve_layer(model: nn.Module, layer: str | None, owner: str) -> tuple[str, nn.Module]:
    """The GradCam layer: ``layer`` by name, or the model's ``default_attribution_layer``.

    Raises:
        InputError: the model has no ``attribution_layers()`` (it is not a SegModel).
        ConfigError: ``layer`` is not one of the model's attribution layers (lists them).
        ContractError: the model's declared default layer is not among its layers.
    """
    mname = model_name(model)
    getter = getattr(model, "attribution_layers", None)
    if getter is None:
        raise InputError(
            f"{owner}: model {mname!r} ({type(model).__name__}) has no attribution_layers(); "
            "layer methods need an ada_core.SegModel"
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
            f"'layer' parameter (params.layer). {suggest(str(default), layers)}"
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
