"""The base of the gradient attributors: one captum call alone, shared passes in a group.

A separate ``attribute`` call runs the captum algorithm of the subclass (:meth:`_captum`).
:meth:`GradientAttributor.attribute_group` computes any set of these attributors on one batch
with one forward pass and one backward pass per ReLU gradient rule it needs (plain, guided,
deconv), then lets each attributor assemble its map from the shared gradients
(:meth:`_combine`). The two paths are tested to agree.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ada_captum._guard import (
    ReluRule,
    ReluSwitch,
    attribution_guard,
    autocast,
    check_layer_output,
    resolve_layer,
)
from ada_captum._targets import TargetConfig, TargetForward, target_scores
from ada_core.errors import ContractError
from ada_core.interfaces import Attributor, SegModel, input_gradients_only

__all__ = ["GradientAttributor", "SharedPass", "grad_cam"]

SHARE_KEY = "ada_captum.gradient"
_RULES: tuple[ReluRule, ...] = ("plain", "guided", "deconv")


def grad_cam(activation: Tensor, gradient: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """GradCam: ReLU of the gradient-weighted channel sum of a layer, upsampled.

    Args:
        activation: ``(B, C, h, w)`` layer output.
        gradient: ``(B, C, h, w)`` gradient of the target with respect to it.
        size: ``(H, W)`` input size to upsample to.
        mode: ``"bilinear"`` or ``"nearest"`` (``F.interpolate`` mode).

    Returns:
        ``(B, 1, H, W)`` float32, ``>= 0``.
    """
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation.float()).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=size, mode=mode)


@dataclass
class SharedPass:
    """Gradients of one forward pass, for :meth:`GradientAttributor._combine`.

    ``inputs`` is the ``(B, 1, H, W)`` input; ``input_grads[rule]`` the input gradient under
    each ReLU rule; ``layer_acts``/``layer_grads`` the plain-rule output and gradient of each
    GradCam layer, by name.
    """

    inputs: Tensor
    input_grads: dict[str, Tensor] = field(default_factory=dict)
    layer_acts: dict[str, Tensor] = field(default_factory=dict)
    layer_grads: dict[str, Tensor] = field(default_factory=dict)


class GradientAttributor(Attributor):
    """A captum gradient method on the segmentation target of :class:`TargetConfig`.

    Subclasses set ``rules`` (the ReLU gradient rules they need) and ``uses_layer``, and
    implement :meth:`_captum` (the separate call) and :meth:`_combine` (from a shared pass).
    Both return the signed or non-negative raw map; the base takes its magnitude.
    """

    Config: ClassVar[type[TargetConfig]] = TargetConfig
    config: TargetConfig
    share_key: ClassVar[str | None] = SHARE_KEY
    #: ReLU gradient rules the method's backward passes use.
    rules: ClassVar[tuple[ReluRule, ...]] = ("plain",)
    #: Whether the method reads a layer (``config.layer``) of the model.
    uses_layer: ClassVar[bool] = False

    @property
    def owner(self) -> str:
        return f"attributor {self.name!r}"

    @property
    def guided(self) -> str | None:
        """Name of the method when it changes ReLU gradients (needs nn.ReLU modules)."""
        return self.name if set(self.rules) - {"plain"} else None

    def layer_name(self, model: nn.Module) -> tuple[str, nn.Module] | None:
        if not self.uses_layer:
            return None
        return resolve_layer(model, getattr(self.config, "layer", None), self.owner)

    # -- separate call: captum ------------------------------------------------------------
    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        layer = self.layer_name(model)
        forward = TargetForward(model, masks, self.config.target, self.config.threshold)
        x = images.requires_grad_(True)
        with attribution_guard(model, self.owner, guided=self.guided):
            seen: dict[str, object] = {}
            if layer is not None:
                layer[1].register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
                model.register_forward_hook(lambda m, i, o: seen.__setitem__("done", True))
            try:
                with autocast(images, self.config.amp), warnings.catch_warnings():
                    # captum warns on every call that it sets (and removes) ReLU hooks.
                    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                    raw = self._captum(forward, x, layer[1] if layer else None)
            except Exception as e:
                if layer is not None and seen.get("done"):
                    # captum fails obscurely when the layer never ran or gave no tensor
                    try:
                        check_layer_output(seen.get("out"), layer[0], self.owner)
                    except ContractError as contract:
                        raise contract from e
                raise
            if layer is not None:
                check_layer_output(seen.get("out"), layer[0], self.owner)
        return self._finish([forward.fallback], raw)

    @abstractmethod
    def _captum(self, forward: TargetForward, x: Tensor, layer: nn.Module | None) -> Tensor:
        """The captum attribution ``(B, 1, H, W)`` of ``forward`` (model + target) at ``x``."""

    # -- shared passes ---------------------------------------------------------------------
    @abstractmethod
    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        """This method's raw map ``(B, 1, H, W)`` from the gradients of a shared pass."""

    def _finish(self, fallbacks: Sequence[Tensor | None], raw: Tensor) -> Tensor:
        """Magnitude of ``raw`` as float32; counts fallbacks and all-zero maps."""
        saliency = raw.detach().float().abs()
        for fallback in fallbacks:
            if fallback is not None:
                self.counters["zero_gradient"] += int(fallback.sum())
        self.counters["zero_saliency"] += int((saliency.flatten(1).amax(1) == 0).sum())
        return saliency

    @classmethod
    def attribute_group(
        cls,
        attributors: Sequence[Attributor],
        model: SegModel,
        images: Tensor,
        masks: Tensor,
    ) -> list[Tensor]:
        """Compute the attributors on one batch, sharing forward and backward passes.

        Gradient attributors with the same target settings share one forward pass and one
        backward pass per ReLU rule (plain: vanilla, input_x_gradient, gradcam; guided:
        guided_backprop, guided_gradcam; deconv: deconvnet). Anything else is computed alone.
        Results equal the separate :meth:`attribute` calls; counters are updated the same way.
        """
        results: dict[int, Tensor] = {}
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, a in enumerate(attributors):
            if isinstance(a, GradientAttributor):
                c = a.config
                groups.setdefault((c.target, c.threshold, c.amp), []).append(i)
            else:
                results[i] = a.attribute(model, images, masks)
        for indices in groups.values():
            members = [cast(GradientAttributor, attributors[i]) for i in indices]
            results.update(zip(indices, _shared(members, model, images, masks)))
        return [results[i] for i in range(len(attributors))]


def _shared(
    members: list[GradientAttributor], model: SegModel, images: Tensor, masks: Tensor
) -> list[Tensor]:
    """One forward and one backward per needed rule for attributors of equal target settings."""
    first = members[0]
    first._check_inputs(images, masks)
    names = ", ".join(repr(a.name) for a in members)
    owner = f"attributors {names}" if len(members) > 1 else first.owner
    layers = [a.layer_name(model) for a in members]
    needed = {name: module for name, module in filter(None, layers)}
    rules = [r for r in _RULES if any(r in a.rules for a in members)]
    guided = next((a.guided for a in members if a.guided), None)
    cfg = first.config
    was_training = model.training
    model.eval()
    try:
        with input_gradients_only(model), attribution_guard(model, owner, guided=guided) as guard:
            switch = ReluSwitch(guard.relus) if set(rules) - {"plain"} else None
            captured: dict[str, Tensor] = {}
            for name, module in needed.items():
                module.register_forward_hook(
                    lambda m, i, o, name=name: captured.__setitem__(name, o)
                )
            x = images.detach().requires_grad_(True)
            with autocast(images, cfg.amp):
                scores, fallback = target_scores(model(x), masks, cfg.target, cfg.threshold)
            acts = {n: check_layer_output(captured.get(n), n, owner) for n in needed}
            shared = SharedPass(
                inputs=x.detach(), layer_acts={n: a.detach() for n, a in acts.items()}
            )
            total = scores.sum()
            for k, rule in enumerate(rules):
                if switch is not None:
                    switch.rule = rule
                wrt = [x] + (list(acts.values()) if rule == "plain" else [])
                grads = torch.autograd.grad(total, wrt, retain_graph=k < len(rules) - 1)
                shared.input_grads[rule] = grads[0]
                if rule == "plain":
                    shared.layer_grads = dict(zip(acts, grads[1:]))
    finally:
        model.train(was_training)
    outputs = []
    for a, layer in zip(members, layers):
        raw = a._combine(shared, layer[0] if layer else "")
        outputs.append(a._check_output(a._finish([fallback], raw), images))
    return outputs
