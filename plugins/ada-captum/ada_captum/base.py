"""The base of the gradient attributors: one shared pass, for one method or a group.

Every gradient method is computed by :func:`shared_pass`: one forward pass, then one backward
pass per ReLU gradient rule the members need (plain, guided, deconv), after which each member
assembles its map from the shared gradients (:meth:`GradientAttributor._combine`). A single
``attribute`` call is the group of one. captum is not used here: the tests compare every
method, alone and in groups, against captum and against hand-written autograd references.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ada_captum._guard import (
    ReluRule,
    attribution_pass,
    autocast,
    check_layer_output,
    no_relu_message,
    resolve_layer,
)
from ada_captum._targets import TargetConfig, target_scores
from ada_core import Attributor, ConfigError, ContractError, SegModel

__all__ = ["GradientAttributor", "SharedPass", "grad_cam", "shared_pass"]

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
    """A gradient method on the segmentation target of :class:`TargetConfig`.

    Subclasses set ``rules`` (the ReLU gradient rules they need) and ``uses_layer``, and
    implement :meth:`_combine` (the raw map from a shared pass); the base takes its magnitude.
    """

    Config: ClassVar[type[TargetConfig]] = TargetConfig
    config: TargetConfig
    share_key: ClassVar[str | None] = SHARE_KEY
    #: ReLU gradient rules the method's backward passes use.
    rules: ClassVar[tuple[ReluRule, ...]] = ("plain",)
    #: Whether the method reads a layer (``config.layer``) of the model.
    uses_layer: ClassVar[bool] = False
    #: Whether :meth:`_combine` reads an input gradient (GradCam reads only its layer's).
    uses_input_grad: ClassVar[bool] = True

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

    def check_model(self, model: SegModel) -> None:
        """Raise ConfigError when ``model`` lacks what the method needs.

        Layer methods need ``params.layer`` (or the model's default layer) among
        ``model.attribution_layers()``; guided methods need ``nn.ReLU`` modules.
        """
        if self.guided and not any(isinstance(m, nn.ReLU) for m in model.modules()):
            raise ConfigError(
                no_relu_message(self.owner, model, self.name, "has no nn.ReLU modules")
            )
        try:
            self.layer_name(model)
        except ContractError as e:  # a missing default layer: the user can still set one
            raise ConfigError(str(e)) from e

    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        return shared_pass([self], model, images, masks)[0]

    @classmethod
    def _attribute_many(
        cls,
        attributors: Sequence[Attributor],
        model: SegModel,
        images: Tensor,
        masks: Tensor,
    ) -> list[Tensor]:
        """One shared pass per set of target settings (``target``, ``threshold``, ``amp``).

        A member of another class that shares the key is computed alone (its ``_attribute``).
        """
        results: dict[int, Tensor] = {}
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, a in enumerate(attributors):
            if isinstance(a, GradientAttributor):
                c = a.config
                groups.setdefault((c.target, c.threshold, c.amp), []).append(i)
            else:
                results[i] = a._attribute(model, images, masks)
        for indices in groups.values():
            members = [a for i in indices if isinstance(a := attributors[i], GradientAttributor)]
            results.update(zip(indices, shared_pass(members, model, images, masks)))
        return [results[i] for i in range(len(attributors))]

    @abstractmethod
    def _combine(self, shared: SharedPass, layer: str) -> Tensor:
        """This method's raw map ``(B, 1, H, W)`` from the gradients of a shared pass."""

    def _finish(self, fallback: Tensor, raw: Tensor) -> Tensor:
        """Magnitude of ``raw`` as float32; counts fallbacks and all-zero maps."""
        saliency = raw.detach().float().abs()
        self.counters["zero_gradient"] += int(fallback.sum())
        self.counters["zero_saliency"] += int((saliency.flatten(1).amax(1) == 0).sum())
        return saliency


def shared_pass(
    members: Sequence[GradientAttributor], model: SegModel, images: Tensor, masks: Tensor
) -> list[Tensor]:
    """Maps of attributors with equal target settings: one forward, one backward per rule.

    Args:
        members: gradient attributors with the same ``target``, ``threshold`` and ``amp``.
        model: the network, in eval mode with parameters frozen (the base class's template).
        images: ``(B, 1, H, W)`` validated input.
        masks: ``(B, 1, H, W)`` ground truth.

    Returns:
        One ``(B, 1, H, W)`` float32 map per member, ``>= 0``.
    """
    first = members[0]
    names = ", ".join(repr(a.name) for a in members)
    owner = f"attributors {names}" if len(members) > 1 else first.owner
    layers = [a.layer_name(model) for a in members]
    needed = {name: module for name, module in filter(None, layers)}
    rules = [r for r in _RULES if any(r in a.rules for a in members)]
    guided = next((a.guided for a in members if a.guided), None)
    cfg = first.config
    with attribution_pass(model, owner, guided=guided) as p:
        if set(rules) - {"plain"}:
            p.switch_relus()
        # Only a layer's gradient is wanted (GradCam alone): the layer's output becomes the
        # graph's leaf, so the input is not differentiated and backward stops at the layer.
        # With several layers one may feed another, so the input stays the leaf.
        with_input = any(a.uses_input_grad for a in members) or len(needed) != 1
        captured = p.capture(needed, leaf=not with_input)
        x = images.detach().requires_grad_(with_input)
        with autocast(images, cfg.amp):
            scores, fallback = target_scores(model(x), masks, cfg.target, cfg.threshold)
        acts = {n: check_layer_output(captured.get(n), n, owner) for n in needed}
        shared = SharedPass(inputs=x.detach(), layer_acts={n: a.detach() for n, a in acts.items()})
        total = scores.sum()
        for k, rule in enumerate(rules):
            p.rule = rule
            wrt = ([x] if with_input else []) + (list(acts.values()) if rule == "plain" else [])
            grads = torch.autograd.grad(total, wrt, retain_graph=k < len(rules) - 1)
            if with_input:
                shared.input_grads[rule], grads = grads[0], grads[1:]
            if rule == "plain":
                shared.layer_grads = dict(zip(acts, grads))
    return [
        a._finish(fallback, a._combine(shared, layer[0] if layer else ""))
        for a, layer in zip(members, layers)
    ]
