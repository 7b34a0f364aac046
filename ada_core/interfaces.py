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
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

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
    ``Attributor.attribute`` uses it; a plugin's ``attribute_group`` override should too.
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

    ``attribute`` runs the model in eval mode (so one sample's saliency does not depend on the
    rest of the batch), restores its mode, leaves no hooks and leaves parameter ``.grad`` as it
    was. The output is float32, non-negative and finite, on the input's device.
    """

    #: Attributors with the same non-None key can be computed together by ``attribute_group``.
    share_key: ClassVar[str | None] = None
    #: True for a control rather than an interpretability method (e.g. random erasing).
    control: ClassVar[bool] = False

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self._init_config(config)

    def set_seed(self, seed: int) -> None:
        """Seed the attributor's random stream from the run (called before a branch starts).

        Default: nothing to seed.
        """

    def check_model(self, model: SegModel) -> None:
        """Raise ConfigError when this attributor cannot explain ``model`` (called before any
        training). Default: every model is fine."""

    def state_dict(self) -> dict[str, Any]:
        """Run-time state beyond the config (e.g. a random stream's position); the engine
        checkpoints it so that a resumed run continues exactly. Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        """Saliency of ``model`` on ``images``.

        Args:
            model: the network to explain.
            images: ``(B, 1, H, W)`` float input.
            masks: ``(B, 1, H, W)`` ground-truth masks in {0, 1} (used by some targets).

        Returns:
            ``(B, 1, H, W)`` float32 saliency, ``>= 0``, finite.
        """
        self._check_inputs(images, masks)
        was_training = model.training
        model.eval()
        try:
            with input_gradients_only(model):
                saliency = self._attribute(model, images.detach(), masks.detach())
        finally:
            model.train(was_training)
        return self._check_output(saliency, images)

    @classmethod
    def attribute_group(
        cls,
        attributors: Sequence[Attributor],
        model: SegModel,
        images: Tensor,
        masks: Tensor,
    ) -> list[Tensor]:
        """Compute several attributors of one ``share_key`` on one batch.

        The default calls each in turn; a plugin overrides it to share forward/backward passes.
        Results must equal the separate ``attribute`` calls.
        """
        return [a.attribute(model, images, masks) for a in attributors]

    @abstractmethod
    def _attribute(self, model: SegModel, images: Tensor, masks: Tensor) -> Tensor:
        """Compute the saliency; the model is in eval mode with parameters frozen."""

    def _check_inputs(self, images: Tensor, masks: Tensor) -> None:
        owner = f"attributor {self.name!r}"
        check_image_batch(images, "images", owner)
        check_image_batch(masks, "masks", owner)
        if masks.shape != images.shape:
            raise InputError(
                f"{owner}: masks shape {tuple(masks.shape)} differs from images shape "
                f"{tuple(images.shape)}"
            )

    def _check_output(self, saliency: Tensor, images: Tensor) -> Tensor:
        owner = f"attributor {self.name!r}"
        if not isinstance(saliency, Tensor) or saliency.shape != images.shape:
            got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency)
            raise ContractError(f"{owner} returned {got}, expected {tuple(images.shape)}")
        saliency = saliency.detach().float()
        if not bool(torch.isfinite(saliency).all()) or bool((saliency < 0).any()):
            raise ContractError(f"{owner} returned negative or non-finite saliency")
        return saliency


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


@dataclass(frozen=True)
class Subject:
    """One loadable unit of a data set (a scan; with several raters, one rater's labelling)."""

    id: str
    site: str = "unknown"
    #: Key that groups sessions (and raters) of one person: splits never separate them.
    person: str = ""
    session: str | None = None
    labelled: bool = True

    @property
    def group(self) -> str:
        return self.person or self.id


@dataclass
class Volume:
    """A 3-D scan with its labels, axial slices along the last axis after canonical reorientation.

    ``image`` is float32 ``(X, Y, Z)``; ``mask`` (grey matter) and ``cord`` are uint8 in {0, 1}
    or None; ``spacing`` is the voxel size in millimetres ``(sx, sy, sz)``.
    """

    subject: Subject
    image: np.ndarray
    mask: np.ndarray | None
    spacing: tuple[float, float, float]
    cord: np.ndarray | None = None
    affine: np.ndarray | None = None
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)


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
