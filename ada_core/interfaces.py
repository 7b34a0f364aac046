"""The four component interfaces and the data types they exchange.

Every component class has ``name: ClassVar[str]`` (its registry key) and
``Config: ClassVar[type[ComponentConfig]]`` (pydantic, ``extra="forbid"``, frozen, every field
described and defaulted). Settings come in at construction, tensors at call time.

The public methods (``Attributor.attribute``, ``MaskBuilder.build``) do the shared work once:
validate the input, put the model in eval mode, protect parameter gradients, check the output.
Subclasses implement one private method (``_attribute``, ``_build``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from ada_core import _attributor_checks as _checks
from ada_core._volumes import Subject, Volume
from ada_core.errors import ContractError, InputError

__all__ = [
    "Attributor",
    "Component",
    "ComponentConfig",
    "MaskBuilder",
    "SegDataset",
    "SegModel",
    "Subject",
    "Volume",
    "check_image_batch",
    "input_gradients_only",
]


class ComponentConfig(BaseModel):
    """Base of every component's ``Config``: unknown keys are errors and instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Mixin giving a component its ``name``, ``Config`` and validated ``config``."""

    name: ClassVar[str]
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    #: Contract checks this component is known to fail, with the reason (strict xfail there).
    contract_xfail: ClassVar[dict[str, str]] = {}

    def _init_config(self, config: ComponentConfig | None) -> None:
        if config is None:
            config = self.Config()
        elif not isinstance(config, self.Config):
            raise TypeError(
                f"{type(self).__name__} expects a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config
        # Events worth reporting (e.g. "zero_gradient", "no_window"); the engine logs and resets.
        self.counters: Counter[str] = Counter()


def check_image_batch(tensor: Tensor, argument: str, owner: str) -> None:
    """Raise InputError unless ``tensor`` is a finite floating (B, 1, H, W) tensor."""
    if not isinstance(tensor, Tensor):
        raise InputError(f"{owner}: {argument} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != 4 or tensor.shape[1] != 1:
        raise InputError(
            f"{owner}: {argument} must have shape (B, 1, H, W), got {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise InputError(f"{owner}: {argument} must be floating point, got {tensor.dtype}")
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{owner}: {argument} contains NaN or infinite values")


class SegModel(Component, nn.Module, ABC):
    """A binary segmentation network: ``forward(x (B,1,H,W)) -> logits (B,1,H,W)``.

    Activations must be ``nn.ReLU`` modules, one instance per use: guided attribution methods
    hook ReLU modules, and a functional relu silently turns them into vanilla gradients.

    ``forward`` must start with ``self.check_input_size(*x.shape[-2:])``: an image the network
    cannot take then fails with a message that says how to fix the size, instead of a shape
    error deep inside a convolution (the contract kit checks it).
    """

    #: Key of :meth:`attribution_layers` that layer methods (GradCam) use by default.
    default_attribution_layer: ClassVar[str]
    #: Height and width must be multiples of this (the network's total stride).
    input_multiple: ClassVar[int] = 1

    def __init__(self, config: ComponentConfig | None = None) -> None:
        nn.Module.__init__(self)
        self._init_config(config)

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Map images ``(B, 1, H, W)`` to foreground logits ``(B, 1, H, W)``."""

    @abstractmethod
    def attribution_layers(self) -> dict[str, nn.Module]:
        """Named sub-modules that layer attribution methods may use."""

    def check_input_size(self, height: int, width: int) -> None:
        """Raise InputError when the network cannot take an image of this size."""
        m = self.input_multiple
        if height % m or width % m:
            up = lambda v: -(-v // m) * m  # noqa: E731
            raise InputError(
                f"model {self.name!r}: input {height}x{width} is not a multiple of {m} in both "
                f"dimensions; pad or crop the images to e.g. {up(height)}x{up(width)} "
                f"(data.preprocess.size)"
            )


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Freeze parameters so autograd computes input (and activation) gradients only.

    Restores each parameter's ``requires_grad`` and keeps its ``.grad`` untouched.
    ``Attributor.attribute_group`` (hence ``attribute``) wraps every plugin hook in it.
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad


class Attributor(Component, ABC):
    """Maps a model and images to a non-negative saliency map of the same size.

    :meth:`attribute` (one attributor) and :meth:`attribute_group` (several on one batch) are
    the only public entries, and both run one template, once per call: validate the inputs,
    put the model in eval mode, freeze its parameters (:func:`input_gradients_only`), enable
    autograd, save torch's global RNG state (CPU, and the images' CUDA device), call the plugin
    hook, then restore the per-module train/eval flags, ``requires_grad``, ``.grad`` and the
    RNG state (also when the hook raises) and check every map. The output is float32,
    non-negative and finite, on the input's device; since the model is in eval mode, a
    sample's saliency does not depend on the rest of the batch.

    A plugin implements :meth:`_attribute` (one map). To share forward/backward passes between
    methods it sets ``share_key`` and overrides the classmethod :meth:`_attribute_many`. It
    never overrides ``attribute`` or ``attribute_group`` (a subclass that does is refused).
    """

    #: Attributors with the same non-None key reach one ``_attribute_many`` call per batch.
    share_key: ClassVar[str | None] = None
    #: True for a control (e.g. random saliency) rather than an interpretability method.
    control: ClassVar[bool] = False
    #: False for a branch that trains on without erasing anything (the built-in keep-training
    #: control): the engine never asks it for saliency and gives it no mask builder.
    erases: ClassVar[bool] = True
    #: How generated sentences name the branch (e.g. "random erasing"); default: its name.
    title: ClassVar[str] = ""
    #: True for a planted-effect control that knows the answer (e.g. the phantom's oracle):
    #: the verdict and report mark its study as a positive control, never as a method.
    planted: ClassVar[bool] = False

    def describe(self) -> str:
        """The branch's name in sentences: :attr:`title`, else the registry name."""
        return self.title or self.name

    @property
    def repeat(self) -> int:
        """Times a branch that does not erase shows the conventional data per epoch. Default 1."""
        return 1

    @classmethod
    def resolve_config(cls, config: ComponentConfig, train: Any) -> ComponentConfig:
        """The config with defaults that come from the ``[train]`` table filled in (``train``
        is the run's :class:`~ada_core.config.TrainConfig`). Default: ``config`` unchanged."""
        return config

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self._init_config(config)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for entry in ("attribute", "attribute_group"):
            if entry in vars(cls):
                raise TypeError(
                    f"{cls.__name__} overrides Attributor.{entry}, the public entry that does "
                    "the shared work (validation, eval mode, frozen parameters, RNG, output "
                    "checks) once; implement _attribute, or the classmethod _attribute_many to "
                    "share passes, instead"
                )

    def state_dict(self) -> dict[str, Any]:
        """Run-time state beyond the config (e.g. a random stream's position); the engine
        checkpoints it so that a resumed run continues exactly. Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def set_seed(self, seed: int) -> None:
        """Seed this attributor's own random stream. Default: no-op (deterministic methods).

        The engine calls it before a branch starts with a seed derived from the run's seed
        and the branch label, so every random stream of a run derives from its seed.
        """

    def check_model(self, model: SegModel) -> None:
        """Raise ConfigError when this attributor cannot work with ``model``. Default: no-op.

        Called by the engine and ``ada config validate`` before any training; the message
        names the attributor and the parameter to fix (e.g. ``params.layer``).
        """

    def attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        """Saliency of ``model`` on ``images``: :meth:`attribute_group` with this one member.

        Args:
            model: the network to explain.
            images: ``(B, 1, H, W)`` float input.
            masks: ``(B, 1, H, W)`` ground-truth masks in {0, 1} (used by some targets).

        Returns:
            ``(B, 1, H, W)`` float32 saliency, ``>= 0``, finite.
        """
        return Attributor.attribute_group([self], model, images, masks)[0]

    @staticmethod
    def attribute_group(
        attributors: Sequence[Attributor], model: SegModel, images: Tensor, masks: Tensor
    ) -> list[Tensor]:
        """Saliency of several attributors on one batch, the shared work done once.

        Members are grouped by ``share_key`` (first-seen order; ``None`` stays alone) and each
        group goes to ``type(first)._attribute_many`` once. Results equal separate
        :meth:`attribute` calls.

        Args:
            attributors: the members (any classes); an empty sequence gives ``[]``.
            model: the network to explain.
            images: ``(B, 1, H, W)`` float input.
            masks: ``(B, 1, H, W)`` ground truth in {0, 1}.

        Returns:
            One ``(B, 1, H, W)`` float32 map per member, in order.

        Raises:
            InputError: a member is not an Attributor, or the tensors are malformed.
            ContractError: a map has the wrong shape, dtype or device, or is negative or not
                finite (the message names the attributor); a hook returned too few maps.
        """
        members = list(attributors)
        _checks.check_members(members, Attributor)
        if not members:
            return []
        owner = _checks.owner_of(members)
        Attributor._check_inputs(images, masks, owner)
        if not isinstance(model, nn.Module):
            raise InputError(f"{owner}: model must be a SegModel, got {type(model).__name__}")
        x, y = images.detach(), masks.detach()
        maps: list[Tensor] = [images] * len(members)
        modes = [(m, m.training) for m in model.modules()]
        # Attribution must not shift the training random stream (e.g. dropout masks).
        devices = [images.device] if images.is_cuda else []
        try:
            model.eval()
            with (
                torch.random.fork_rng(devices, device_type="cuda"),
                torch.enable_grad(),
                input_gradients_only(model),
            ):
                for indices in _checks.share_groups(members):
                    group = [members[i] for i in indices]
                    out = type(group[0])._attribute_many(group, model, x, y)
                    for i, saliency in zip(indices, _checks.check_group_size(out, group)):
                        maps[i] = saliency
        finally:
            for module, training in modes:
                module.training = training
        return [
            _checks.check_saliency(s, images, _checks.owner_of([a])) for a, s in zip(members, maps)
        ]

    @classmethod
    def _attribute_many(
        cls, attributors: Sequence[Attributor], model: SegModel, images: Tensor, masks: Tensor
    ) -> list[Tensor]:
        """Maps of members sharing one ``share_key``; default: each member's :meth:`_attribute`.

        Override it to share passes. Called by :meth:`attribute_group` with the shared work
        done (eval mode, frozen parameters, autograd on, RNG saved, inputs detached); return
        one ``(B, 1, H, W)`` map per member, in order. Hooks it registers on the model must be
        removed through their handles, also when it raises.
        """
        return [a._attribute(model, images, masks) for a in attributors]

    @abstractmethod
    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        """The saliency ``(B, 1, H, W)`` of validated inputs, shared work already done."""

    @staticmethod
    def _check_inputs(images: Tensor, masks: Tensor, owner: str) -> None:
        check_image_batch(images, "images", owner)
        check_image_batch(masks, "masks", owner)
        if masks.shape != images.shape:
            raise InputError(
                f"{owner}: masks shape {tuple(masks.shape)} differs from images shape "
                f"{tuple(images.shape)}"
            )


class MaskBuilder(Component, ABC):
    """Turns saliency into a keep mask: ``build(saliency, gt) -> keep`` in {0, 1} (0 = erase)."""

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self._init_config(config)

    @property
    def fill(self) -> float:
        """Value written into erased pixels by :meth:`apply` (default 0); override to change."""
        return 0.0

    @property
    def erase_size(self) -> int | None:
        """Side Z of the square region this builder erases, when it erases squares.

        The engine uses it as the default side of the robustness set's occluding square
        (``train.robustness_size``). None: the builder has no such size.
        """
        return None

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ConfigError when the builder cannot work on images of this size.

        Called by the engine (and ``ada config validate``) with the preprocessed image size,
        before any work starts. Default: every size is fine.
        """

    def build(self, saliency: Tensor, ground_truth: Tensor) -> Tensor:
        """Keep mask ``(B, 1, H, W)`` float32 in {0, 1}, on the saliency's device."""
        owner = f"mask builder {self.name!r}"
        check_image_batch(saliency, "saliency", owner)
        check_image_batch(ground_truth, "ground_truth", owner)
        if saliency.shape != ground_truth.shape:
            raise InputError(
                f"{owner}: saliency shape {tuple(saliency.shape)} differs from ground_truth "
                f"shape {tuple(ground_truth.shape)}"
            )
        if bool(((ground_truth != 0) & (ground_truth != 1)).any()):
            raise InputError(f"{owner}: ground_truth must be binary (0/1); threshold it first")
        keep = self._build(saliency, ground_truth)
        if keep.shape != saliency.shape:
            raise ContractError(f"{owner} returned {tuple(keep.shape)}, expected {tuple(saliency.shape)}")
        if bool(((keep != 0) & (keep != 1)).any()):
            raise ContractError(f"{owner} returned a keep mask with values other than 0 and 1")
        return keep.float()

    def apply(self, images: Tensor, keep: Tensor) -> Tensor:
        """Occluded images: ``images`` where ``keep`` is 1, :attr:`fill` where it is 0."""
        return images * keep + self.fill * (1 - keep)

    @abstractmethod
    def _build(self, saliency: Tensor, ground_truth: Tensor) -> Tensor:
        """Compute the keep mask for validated inputs."""


class SegDataset(Component, ABC):
    """Lists subjects and loads each as a :class:`Volume`.

    ``ada_core.data`` turns volumes into the 2-D slice tensors every engine uses.
    """

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self._init_config(config)

    @abstractmethod
    def subjects(self) -> list[Subject]:
        """Every subject, labelled or not, in a stable order."""

    @abstractmethod
    def load(self, subject: Subject) -> Volume:
        """Read one subject; raise DataError naming the file on bad data."""

    def fingerprint(self) -> str:
        """A string that changes when the data changes (for caches). Default: the config."""
        return f"{self.name}:{self.config.model_dump_json()}"
