"""Classical augmentations, batched on the device (image and mask together).

The paper's Table 2 is the default: rotation +-4.6 deg, shift +-0.03 of the size, scale
0.98-1.02, channel (intensity) shift +-0.17, elastic deformation alpha 30 sigma 4.

Like torchio/MONAI, a random augmentation first samples its parameters
(:func:`sample_params`, one :class:`AugmentParams` per batch) and then applies a deterministic
transform (:func:`apply_params`), so every augmentation can be replayed from its parameters.
Image and mask go through one sampling grid; the mask is resampled bilinearly and thresholded
at 0.5, so it stays binary and its boundary follows the continuous deformation instead of the
half-pixel jitter of nearest-neighbour resampling.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from ada_core.errors import InputError
from ada_core.fieldtags import Settings, Unused, tags, used_if, used_unless, used_when

__all__ = ["AugmentConfig", "AugmentParams", "Augmenter", "apply_params", "sample_params"]


_ON = used_when("enabled", True)
_AFFINE = tags(_ON, used_unless("p_affine", 0))
_ELASTIC = tags(_ON, used_unless("p_elastic", 0))


class AugmentConfig(Settings):
    """The paper's Table 2 augmentations; each transform applies with its probability."""

    enabled: bool = Field(True, description="Apply classical augmentation during training.")
    rotation_deg: float = Field(
        4.6, ge=0, description="Maximum rotation in degrees (+-).", json_schema_extra=_AFFINE
    )
    shift: float = Field(
        0.03, ge=0, lt=1, description="Maximum shift as a fraction of the size (+-).",
        json_schema_extra=_AFFINE,
    )
    scale: tuple[float, float] = Field(
        (0.98, 1.02), description="Range of the scale factor.", json_schema_extra=_AFFINE
    )
    channel_shift: float = Field(
        0.17, ge=0, description="Maximum intensity shift (+-).",
        json_schema_extra=tags(_ON, used_unless("p_channel_shift", 0)),
    )
    elastic_alpha: float = Field(
        30.0, ge=0, description="Elastic deformation strength (pixels); 0: none.",
        json_schema_extra=_ELASTIC,
    )
    elastic_sigma: float = Field(
        4.0, gt=0, description="Elastic deformation smoothness (pixels).",
        json_schema_extra=tags(_ELASTIC, used_unless("elastic_alpha", 0)),
    )
    p_affine: float = Field(
        1.0, ge=0, le=1, description="Probability of the affine transform.", json_schema_extra=_ON
    )
    p_channel_shift: float = Field(
        1.0, ge=0, le=1, description="Probability of the intensity shift.", json_schema_extra=_ON
    )
    p_elastic: float = Field(
        0.5, ge=0, le=1, description="Probability of the elastic deformation.",
        json_schema_extra=_ON,
    )
    padding: Literal["border", "zeros", "reflection"] = Field(
        "border",
        description="How pixels sampled outside the image are filled: 'border' (nearest edge "
        "value, Keras' fill_mode='nearest'), 'zeros' or 'reflection'.",
        json_schema_extra=tags(_ON, used_if(
            "a transform moves pixels: `p_affine` > 0 with a rotation, shift or scale other "
            "than 1, or `p_elastic` > 0 with `elastic_alpha` > 0")),
    )

    def moves_pixels(self) -> bool:
        """Whether some transform samples pixels from elsewhere (else ``padding`` is unused:
        the identity grid stays inside the image)."""
        affine = self.p_affine > 0 and (self.rotation_deg > 0 or self.shift > 0
                                        or tuple(self.scale) != (1.0, 1.0))  # fmt: skip
        return affine or (self.p_elastic > 0 and self.elastic_alpha > 0)

    def _inactive(self) -> list[Unused]:
        if not self.enabled or self.moves_pixels():
            return []  # (enabled = false is the used_when tag's to report)
        affine = ("{prefix}p_affine = 0" if self.p_affine == 0 else
                  "the affine transform is the identity ({prefix}rotation_deg = 0, "
                  "{prefix}shift = 0, {prefix}scale = [1, 1])")  # fmt: skip
        elastic = ("{prefix}p_elastic = 0" if self.p_elastic == 0 else "{prefix}elastic_alpha = 0")
        return [Unused("padding", None, why=f"no transform moves a pixel: {affine} and {elastic}",
                       fix="give {prefix}p_affine or {prefix}p_elastic a probability > 0 and "
                           "its transform a motion")]  # fmt: skip

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, scale: tuple[float, float]) -> tuple[float, float]:
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ValueError(
                f"must be (low, high) with 0 < low <= high, got {scale}; "
                "the paper uses (0.98, 1.02)"
            )
        return scale


@dataclass
class AugmentParams:
    """The sampled parameters of one batch; :func:`apply_params` replays them exactly.

    Attributes:
        angle: ``(B,)`` rotation in radians (0 where the affine transform was not drawn).
        shift: ``(B, 2)`` translation (x, y) as a fraction of the width / height.
        scale: ``(B,)`` isotropic zoom factor (1 where not drawn).
        intensity: ``(B,)`` additive intensity shift (0 where not drawn).
        displacement: ``(B, 2, H, W)`` elastic displacement (x, y) in pixels (0 where not
            drawn), or None when no sample of the batch was deformed.
    """

    angle: Tensor
    shift: Tensor
    scale: Tensor
    intensity: Tensor
    displacement: Tensor | None

    def to(self, device: torch.device | str) -> AugmentParams:
        disp = None if self.displacement is None else self.displacement.to(device)
        return AugmentParams(
            self.angle.to(device),
            self.shift.to(device),
            self.scale.to(device),
            self.intensity.to(device),
            disp,
        )


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def _gaussian_kernel(
    sigma: float, device: torch.device, dtype: torch.dtype = torch.float32
) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@functools.lru_cache(maxsize=32)
def _blur_operator(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(n, n)`` matrix of the 1-D Gaussian blur with whole-sample mirror boundary.

    Built once per (size, sigma, dtype, device) and cached: every batch of an epoch blurs
    with the same operator (callers only read it).

    Row ``i`` holds the kernel taps ``i - r .. i + r``, each folded onto the pixel it reads
    after mirroring at the ends (``d c b | a b c d | c b a``, scipy's ``mode="mirror"``,
    repeated for kernels wider than the image).
    """
    k = _gaussian_kernel(sigma, device, dtype)
    r = k.numel() // 2
    src = torch.arange(n, device=device)[:, None] + torch.arange(-r, r + 1, device=device)
    period = max(2 * (n - 1), 1)
    src = src.remainder(period)
    src = torch.where(src >= n, period - src, src)
    out = torch.zeros(n, n, dtype=dtype, device=device)
    return out.scatter_add_(1, src, k.expand(n, -1).contiguous())


def gaussian_blur(field: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of ``(B, C, H, W)``.

    Whole-sample reflection at the border (scipy's ``mode="mirror"``), radius ``ceil(3 sigma)``.
    Each axis is one matrix product with the blur operator: the same taps and weights as a
    padded convolution, and on CPU an order of magnitude faster than ``conv2d`` with a
    one-channel kernel, which has no efficient path there.
    """
    b, c, h, w = field.shape
    x = field.reshape(b * c * h, w) @ _blur_operator(w, sigma, field.dtype, field.device).T
    x = torch.matmul(_blur_operator(h, sigma, field.dtype, field.device), x.view(b * c, h, w))
    return x.view(b, c, h, w)


def sample_params(
    config: AugmentConfig,
    batch: int,
    size: tuple[int, int],
    generator: torch.Generator,
    *,
    eligible: Tensor | None = None,
) -> AugmentParams:
    """Draw the augmentation of one batch on the generator's device.

    Args:
        config: ranges and probabilities.
        batch: number of samples ``B``.
        size: ``(H, W)`` of the images.
        generator: the source of randomness; its device is where the parameters live.
        eligible: optional ``(B,)`` bool; samples marked False get the identity transform.

    Returns:
        The parameters; samples whose transform was not drawn get its identity value.
    """
    device = generator.device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    h, w = size
    ok = (
        torch.ones(batch, dtype=torch.bool, device=device)
        if eligible is None
        else eligible.to(device)
    )

    def drawn(p: float) -> Tensor:
        return (torch.rand(batch, generator=generator, device=device) < p) & ok

    # Every draw happens whatever the probabilities, so a change of one probability does not
    # shift the random stream of the other transforms.
    affine_on = drawn(config.p_affine)
    angle = _uniform(batch, -1.0, 1.0, generator, device) * math.radians(config.rotation_deg)
    shift = (torch.rand(batch, 2, generator=generator, device=device) * 2 - 1) * config.shift
    scale = _uniform(batch, config.scale[0], config.scale[1], generator, device)
    angle = torch.where(affine_on, angle, torch.zeros_like(angle))
    shift = torch.where(affine_on[:, None], shift, torch.zeros_like(shift))
    scale = torch.where(affine_on, scale, torch.ones_like(scale))

    shift_on = drawn(config.p_channel_shift)
    intensity = _uniform(batch, -config.channel_shift, config.channel_shift, generator, device)
    intensity = torch.where(shift_on, intensity, torch.zeros_like(intensity))

    displacement = None
    elastic_on = drawn(config.p_elastic)
    if config.elastic_alpha > 0 and config.p_elastic > 0:
        # Simard et al. 2003: uniform noise in [-1, 1], Gaussian smoothed, scaled by alpha.
        # Every sample's noise is drawn, so the stream (and the next batch) does not depend on
        # which samples drew the deformation; only theirs is blurred (most of the cost).
        noise = torch.rand(batch, 2, h, w, generator=generator, device=device)
        if not _picks_rows(device):
            # On a GPU the whole batch costs less than the host sync that picking rows needs.
            displacement = gaussian_blur(noise.mul_(2).sub_(1), config.elastic_sigma)
            displacement.mul_((elastic_on * config.elastic_alpha).view(-1, 1, 1, 1))
        else:
            rows = elastic_on.nonzero().squeeze(1)
            if rows.numel():
                field = gaussian_blur(noise[rows].mul_(2).sub_(1), config.elastic_sigma)
                field.mul_(config.elastic_alpha)
                displacement = torch.zeros_like(noise).index_copy_(0, rows, field)
    return AugmentParams(angle, shift, scale, intensity, displacement)


def _picks_rows(device: torch.device) -> bool:
    """Whether the elastic field is blurred only for the samples that draw it: on the CPU
    (picking the rows is a plain host read there); a GPU blurs the batch instead of syncing."""
    return device.type == "cpu"


def _sampling_grid(params: AugmentParams, h: int, w: int, device: torch.device) -> Tensor:
    """``(B, H, W, 2)`` normalised sampling grid: output pixel -> input location.

    The output pixel ``(x, y)`` displaced by the elastic field, ``p = (x + dx, y + dy)``, comes
    from ``R(-angle) (p - c - t) / s + c`` in the input (the inverse of "scale, rotate by
    +angle about the centre ``c``, then shift by ``t``"). With align_corners=True (-1 and 1
    are the centres of the first and last pixels) the normalised location is affine in ``p``,
    ``A p + k`` per sample, so the full-size work is one broadcast add and two multiply-adds
    per coordinate; A and k are computed on ``(B,)`` tensors in float64 (float32 on MPS).
    """
    b = params.angle.shape[0]
    dt = torch.float32 if params.angle.device.type == "mps" else torch.float64
    angle, inv = params.angle.to(dt), 1.0 / params.scale.to(dt)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ox = -cx - params.shift[:, 0].to(dt) * w  # p - c - t = p + (ox, oy)
    oy = -cy - params.shift[:, 1].to(dt) * h
    xs = torch.arange(w, device=device, dtype=torch.float32)
    ys = torch.arange(h, device=device, dtype=torch.float32)
    disp = None if params.displacement is None else params.displacement.float()
    grid = torch.empty(b, 2, h, w, device=device)  # channel-first: contiguous planes
    rows = ((2 / max(w - 1, 1), cos, sin, cx), (2 / max(h - 1, 1), -sin, cos, cy))
    for plane, (norm, u, v, centre) in zip(grid.unbind(1), rows, strict=True):
        ax, ay = norm * inv * u, norm * inv * v
        const = norm * inv * (u * ox + v * oy) + (norm * centre - 1)
        ax, ay, const = (t.to(device, torch.float32) for t in (ax, ay, const))
        by_x = (ax[:, None] * xs)[:, None, :]
        by_y = (ay[:, None] * ys + const[:, None])[:, :, None]
        torch.add(by_x, by_y, out=plane)
        if disp is not None:
            plane.addcmul_(disp[:, 0], ax.view(b, 1, 1)).addcmul_(disp[:, 1], ay.view(b, 1, 1))
    return grid.permute(0, 2, 3, 1)  # grid_sample reads this strided layout as fast


def apply_params(
    images: Tensor, masks: Tensor, params: AugmentParams, padding: str = "border"
) -> tuple[Tensor, Tensor]:
    """Apply sampled parameters to a batch (deterministic).

    Args:
        images: ``(B, 1, H, W)`` float images.
        masks: ``(B, 1, H, W)`` float masks in {0, 1}.
        params: from :func:`sample_params` with the same ``B`` (and ``H, W``).
        padding: grid_sample padding mode for pixels that come from outside the image.

    Returns:
        ``(images, masks)``: warped and intensity-shifted images in the input dtype, and warped
        masks in {0, 1} (bilinear, thresholded at 0.5).
    """
    if images.ndim != 4 or masks.shape != images.shape:
        raise InputError(
            f"augment: images and masks must both be (B, C, H, W) of one shape, got "
            f"{tuple(images.shape)} and {tuple(masks.shape)}"
        )
    b, _, h, w = images.shape
    if params.angle.shape[0] != b:
        raise InputError(
            f"augment: parameters are for {params.angle.shape[0]} samples, batch has {b}"
        )
    if params.displacement is not None and tuple(params.displacement.shape[-2:]) != (h, w):
        raise InputError(
            f"augment: elastic field is {tuple(params.displacement.shape[-2:])}, "
            f"images are {(h, w)}"
        )
    grid = _sampling_grid(params, h, w, images.device)
    both = torch.cat([images.float(), masks.float()], dim=1)
    warped = F.grid_sample(both, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    c = images.shape[1]
    out_images = warped[:, :c] + params.intensity.view(b, 1, 1, 1)
    out_masks = (warped[:, c:] >= 0.5).to(masks.dtype)
    return out_images.to(images.dtype), out_masks


class Augmenter:
    """Seeded, batched augmentation on one device.

    Args:
        config: the transforms and their probabilities.
        generator: the random source (on the images' device); seed it for determinism.
        keep_params: keep the last batch's parameters in :attr:`last_params` for replay.
    """

    def __init__(
        self, config: AugmentConfig, generator: torch.Generator, keep_params: bool = False
    ):
        self.config = config
        self.generator = generator
        self.keep_params = keep_params
        self.last_params: AugmentParams | None = None

    def __call__(
        self, images: Tensor, masks: Tensor, eligible: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Augment ``(B, 1, H, W)`` images and masks; ``eligible`` ``(B,)`` bool limits which."""
        if not self.config.enabled:
            return images, masks
        params = sample_params(
            self.config,
            images.shape[0],
            tuple(images.shape[-2:]),
            self.generator,
            eligible=eligible,
        )
        if self.keep_params:
            self.last_params = params
        out_images, out_masks = apply_params(images, masks, params, self.config.padding)
        if eligible is not None:  # identity resampling is not bit-exact: keep the originals
            keep = ~eligible.view(-1, 1, 1, 1)
            out_images = torch.where(keep, images, out_images)
            out_masks = torch.where(keep, masks, out_masks)
        return out_images, out_masks
