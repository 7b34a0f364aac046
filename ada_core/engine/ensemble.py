"""``train.ensemble``: K copies of one network trained as one batched step (torch.func).

:class:`StackedModel` stacks the members' parameters and buffers along a new leading
dimension (``torch.func.stack_module_state``) and calls the network once through
``vmap(functional_call)`` on a ``(K, B, ...)`` batch: vmap lowers each convolution to one
grouped convolution, batch norm keeps its running statistics per member (the buffers are
vmapped too, so the in-place update lands in each member's slice). Adam runs on the stacked
tensors: it is elementwise, so it is K Adams (the step count is shared: every member takes the
same steps).

Dropout is what vmap cannot give each member on its own: ``randomness="different"`` draws
from one stream for all. Each ``nn.Dropout`` / ``nn.Dropout{1,2,3}d`` of the vmapped copy is
replaced by :class:`_MemberDropout`, which draws each member's mask with that member's own
generator, holding the state torch's global generator would have in the member's own job, in
the order its own forward would (on the CPU ``F.dropout`` is ``bernoulli_(1 - p) / (1 - p)``
of the input's or the feature shape, so the masks are the same numbers). A model that draws
random numbers anywhere else is refused when the run is planned (:func:`check_model`).

:func:`train_epoch` is :func:`~ada_core.engine.loop.train_epoch` for the members at once: each
member its own order (its shuffle generator) and augmentation (its generator; the sampled
parameters of every member applied in one batched call).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ada_core.augment import Augmenter, AugmentParams, apply_params, sample_params
from ada_core.engine.loop import Runtime
from ada_core.errors import ConfigError

__all__ = ["StackedModel", "check_model", "stack_optimizer", "train_epoch", "unstack_optimizer"]

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_FEATURE = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


class _Draws:
    """What the member dropouts of one vmapped call read: the member index (a vmapped 0-d
    tensor) and each member's generator; ``None`` generators: identity (the probe)."""

    def __init__(self) -> None:
        self.index: Tensor | None = None
        self.generators: Sequence[torch.Generator] | None = None


class _MemberDropout(nn.Module):
    """``nn.Dropout`` (or its feature variant) with one random stream per ensemble member."""

    def __init__(self, p: float, feature: bool, draws: _Draws) -> None:
        super().__init__()
        self.p, self.feature = p, feature
        self.draws = draws

    def forward(self, x: Tensor) -> Tensor:
        d = self.draws
        if not self.training or self.p == 0 or d.generators is None:
            return x
        # inside vmap x.shape is one member's shape, as in its own job
        shape = (*x.shape[:2], *(1,) * (x.ndim - 2)) if self.feature else tuple(x.shape)
        if self.p == 1:
            return x * 0
        masks = torch.stack([
            torch.empty(shape, dtype=x.dtype, device=g.device).bernoulli_(1 - self.p, generator=g)
            .div_(1 - self.p) for g in d.generators])  # fmt: skip
        return x * masks[d.index]  # the vmapped index picks each member's own mask


def _member_copy(model: nn.Module, draws: _Draws) -> nn.Module:
    """A weightless copy of ``model`` (on the meta device) with member dropouts."""
    template = copy.deepcopy(model).to("meta")
    for parent in list(template.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _DROPOUTS):
                setattr(parent, name, _MemberDropout(child.p, isinstance(child, _FEATURE), draws))
            elif isinstance(child, (nn.AlphaDropout, nn.FeatureAlphaDropout)):
                raise ConfigError(f"train.ensemble: {type(child).__name__} ({name}) has no "
                                  "per-member stream; set train.ensemble = false")  # fmt: skip
    return template


class StackedModel:
    """``K`` members of one architecture, stacked; called on ``(K, B, ...)`` batches.

    Args:
        models: the members (same architecture, on one device); their tensors are copied.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.draws = _Draws()
        self.template = _member_copy(models[0], self.draws)
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, Tensor] = params  # leaves with requires_grad
        self.buffers: dict[str, Tensor] = buffers
        self.k = len(models)

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], index: Tensor,
              x: Tensor) -> Tensor:  # fmt: skip
        self.draws.index = index
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: Tensor, generators: Sequence[torch.Generator] | None,
                 *, train: bool = True, buffers: dict[str, Tensor] | None = None) -> Tensor:  # fmt: skip
        """Logits ``(K, B, ...)`` of ``x`` ``(K, B, ...)``; ``generators``: each member's
        dropout stream (None: no dropout drawn)."""
        self.template.train(train)
        self.draws.generators = generators
        index = torch.arange(self.k, device=x.device)
        randomness = "error" if generators is None else "same"
        try:
            return vmap(self._call, randomness=randomness)(
                self.params, self.buffers if buffers is None else buffers, index, x)
        finally:
            self.draws.generators, self.draws.index = None, None

    @torch.no_grad()
    def store(self, models: Sequence[nn.Module]) -> None:
        """Copy each member's slice into its own module (weights and buffers)."""
        for k, model in enumerate(models):
            for name, t in [*model.named_parameters(), *model.named_buffers()]:
                t.copy_((self.params.get(name) if name in self.params else self.buffers[name])[k])


def check_model(model: nn.Module, size: tuple[int, int], name: str) -> None:
    """Refuse a model that ``train.ensemble`` cannot batch (run once when the run is planned).

    One vmapped training forward of two copies on a two-image batch, every dropout an identity
    and vmap set to raise on any random operation: what fails here would fail (or share one
    random stream between members) in the ensemble.

    Raises:
        ConfigError: naming the model and the fix.
    """
    stacked = StackedModel([model, model])
    x = torch.zeros(2, 2, 1, *size)
    scratch = {k: v.clone() for k, v in stacked.buffers.items()}  # batch norm updates them
    try:
        with torch.no_grad():
            stacked(x, None, train=True, buffers=scratch)
    except Exception as e:  # noqa: BLE001 - vmap refuses with errors of many kinds
        why = ("it draws random numbers outside nn.Dropout modules, which would give every "
               "branch the same draws" if "randomness" in str(e) else f"vmap failed: {e}")
        raise ConfigError(
            f"train.ensemble: model {name!r} cannot be trained as a batched ensemble: {why}. "
            "Set train.ensemble = false (the branches then train one after another)"
        ) from None


def stack_optimizer(ensemble: torch.optim.Optimizer,
                    members: Sequence[torch.optim.Optimizer]) -> None:  # fmt: skip
    """Load the members' optimiser states (same class, parameters in the same order) into
    ``ensemble``, the optimiser of the stacked parameters: per-parameter tensors stacked,
    the step count (equal for all members) taken once."""
    dicts = [m.state_dict() for m in members]
    state: dict[int, dict[str, Any]] = {}
    for i, first in dicts[0]["state"].items():
        state[i] = {}
        for key, value in first.items():
            if isinstance(value, Tensor) and value.ndim > 0:
                state[i][key] = torch.stack([d["state"][i][key] for d in dicts])
            else:
                state[i][key] = value.clone() if isinstance(value, Tensor) else value
    ensemble.load_state_dict({"state": state, "param_groups": dicts[0]["param_groups"]})


def unstack_optimizer(ensemble: torch.optim.Optimizer,
                      members: Sequence[torch.optim.Optimizer]) -> None:  # fmt: skip
    """Inverse of :func:`stack_optimizer`: each member gets its slice (a copy)."""
    whole = ensemble.state_dict()
    for k, member in enumerate(members):
        state = {i: {key: (v[k].clone() if isinstance(v, Tensor) and v.ndim > 0
                           else v.clone() if isinstance(v, Tensor) else v)
                     for key, v in s.items()} for i, s in whole["state"].items()}  # fmt: skip
        member.load_state_dict({"state": state, "param_groups": member.state_dict()["param_groups"]})


def _augment(augmenters: Sequence[Augmenter], x: Tensor, y: Tensor,
             eligible: Sequence[Tensor | None]) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each member's :class:`Augmenter` call on its batch ``x[k]``: the parameters drawn from
    each member's generator, applied in one call (every sample's transform is its own)."""
    k, b = x.shape[:2]
    config = augmenters[0].config
    params = [sample_params(config, b, tuple(x.shape[-2:]), a.generator, eligible=e)
              for a, e in zip(augmenters, eligible, strict=True)]  # fmt: skip
    fields = ("angle", "shift", "scale", "intensity")
    joined = {f: torch.cat([getattr(p, f) for p in params]) for f in fields}
    fields_d = [p.displacement for p in params]
    disp = None
    if any(d is not None for d in fields_d):
        shape = next(d for d in fields_d if d is not None).shape
        disp = torch.cat([d if d is not None else x.new_zeros(shape) for d in fields_d])
    flat_x, flat_y = x.flatten(0, 1), y.flatten(0, 1)
    out_x, out_y = apply_params(flat_x, flat_y, AugmentParams(**joined, displacement=disp),
                                config.padding)  # fmt: skip
    if any(e is not None for e in eligible):  # as Augmenter: the originals where not eligible
        keep = ~torch.cat([torch.ones(b, dtype=torch.bool, device=x.device) if e is None else e
                           for e in eligible]).view(-1, 1, 1, 1)  # fmt: skip
        out_x = torch.where(keep, flat_x, out_x)
        out_y = torch.where(keep, flat_y, out_y)
    return out_x.view(k, b, *x.shape[2:]), out_y.view(k, b, *y.shape[2:])


def train_epoch(
    stacked: StackedModel,
    optimizer: torch.optim.Optimizer,
    images: Sequence[Tensor],
    masks: Sequence[Tensor],
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch_size: int,
    shuffles: Sequence[torch.Generator],
    dropouts: Sequence[torch.Generator],
    augmenters: Sequence[Augmenter] | None,
    runtime: Runtime,
    augment_masks: Sequence[Tensor | None],
) -> Tensor:
    """One epoch of every member: :func:`~ada_core.engine.loop.train_epoch` for each at once.

    Args:
        images, masks: each member's ``(N, 1, H, W)`` training tensors (one ``N`` for all).
        shuffles, dropouts: each member's order and dropout generators.
        augmenters: each member's augmenter, or None.
        augment_masks: each member's ``(N,)`` bool (which samples may be augmented) or None.

    Returns:
        ``(K,)`` each member's mean training loss (a device tensor, no host sync).
    """
    n = images[0].shape[0]
    orders = [torch.randperm(n, generator=g, device=g.device) for g in shuffles]
    total = torch.zeros(stacked.k, device=images[0].device)
    for start in range(0, n, batch_size):
        idx = [o[start : start + batch_size] for o in orders]
        x = torch.stack([im[i] for im, i in zip(images, idx, strict=True)])
        y = torch.stack([m[i] for m, i in zip(masks, idx, strict=True)])
        if augmenters is not None:
            eligible = [None if a is None else a[i] for a, i in zip(augment_masks, idx, strict=True)]
            x, y = _augment(augmenters, x, y, eligible)
        with runtime.autocast():
            logits = stacked(x, dropouts)
        losses = torch.stack([loss_fn(logits[k], y[k]) for k in range(stacked.k)])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no parameter: each gets its own gradient
        optimizer.step()
        total += losses.detach() * x.shape[1]
    return total / n
