"""Per-volume intensity standardisation (``data.preprocess.standardise``).

Both methods take their statistics from one region of each volume: its crops, the ``size``
boxes centred on the cord (or grey matter) per slice, all slices together. Training has the
cord mask to centre them; ``ada predict`` has the located grey matter (:mod:`ada_core.predict`),
so the statistics come from the same anatomy in both (never from the whole field of view,
whose muscle, fat and air differ from site to site far more than the cord does).

- ``zscore_cord``: ``(x - mean) / std`` over the region.
- ``histogram``: Nyúl–Udupa standardisation (Nyúl, Udupa & Zhang 2000). Each volume's
  landmarks are percentiles (``histogram_landmarks``) of its region; the standard scale is the
  mean over the *training* volumes of their landmarks, each volume's expressed in its own
  region z-score (so the standard scale is on the z-score scale the other choices give); a
  volume is then mapped piecewise-linearly from its own landmarks onto the standard scale,
  extended beyond the first and last landmark by the end segments' slopes (torchio's
  ``HistogramStandardization`` does the same). The scale is learned per fold from its training
  persons only and stored in every checkpoint's ``meta["standard_scale"]``.

Pure tensor functions on ``(Z, H, W)`` stacks; :mod:`ada_core.data` and
:mod:`ada_core.engine.data` call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ada_core._slicing import normalise
from ada_core.errors import DataError

if TYPE_CHECKING:
    from ada_core.data import PreprocessConfig

__all__ = ["DEFAULT_LANDMARKS", "apply_scale", "concat_landmarks", "landmarks_of", "learn_scale",
           "map_to_scale", "region_zscore", "standardise_crops"]

#: Nyúl's landmarks: the 1st and 99th percentile and the deciles between them.
DEFAULT_LANDMARKS: tuple[float, ...] = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0,
                                        90.0, 99.0)  # fmt: skip

_EPS = 1e-8


def region_zscore(crops: Tensor) -> Tensor:
    """``crops (Z, h, w)`` z-scored by the mean and (population) standard deviation of all
    their pixels together; a constant region becomes 0."""
    x = crops.double()
    mean = x.mean()
    std = x.std(unbiased=False)
    return ((x - mean) / (std if std > _EPS else 1.0)).to(crops.dtype)


def landmarks_of(crops: Tensor, percentiles: Sequence[float]) -> Tensor:
    """``(L,)`` float64 percentiles of all pixels of ``crops`` (linear interpolation, as
    ``numpy.percentile``'s default)."""
    q = torch.tensor([p / 100 for p in percentiles], dtype=torch.float64)
    return torch.quantile(crops.double().reshape(-1), q)


def learn_scale(landmarks: Tensor) -> Tensor:
    """The standard scale ``(L,)``: the mean over volumes of ``landmarks (V, L)`` (each row a
    training volume's landmarks in its region z-score).

    Raises:
        DataError: no volume, or a scale that is not increasing (constant volumes).
    """
    if landmarks.ndim != 2 or landmarks.shape[0] == 0:
        raise DataError("histogram standardisation: no training volume to learn the scale from")
    scale = landmarks.double().mean(0)
    if not bool((scale[1:] > scale[:-1]).all()):
        raise DataError(f"histogram standardisation: the learned scale {scale.tolist()} is not "
                        "increasing (the training volumes are constant over their crops)")  # fmt: skip
    return scale


def map_to_scale(x: Tensor, own: Tensor, scale: Tensor) -> Tensor:
    """``x`` mapped piecewise-linearly from its volume's landmarks ``own (L,)`` onto
    ``scale (L,)``; beyond the end landmarks the end segments continue. Landmarks that
    coincide (a flat histogram) are merged, keeping the first."""
    own, scale = own.double(), scale.double()
    keep = torch.ones(len(own), dtype=torch.bool)
    keep[1:] = own[1:] - own[:-1] > _EPS
    own, scale = own[keep], scale[keep]
    if len(own) < 2:  # a constant region: nothing to map, keep it at the scale's middle
        return torch.full_like(x, float(scale.mean()))
    slope = (scale[1:] - scale[:-1]) / (own[1:] - own[:-1])
    seg = torch.bucketize(x.double(), own[1:-1], right=True)  # 0 .. L-2
    return (scale[seg] + slope[seg] * (x.double() - own[seg])).to(x.dtype)


def apply_scale(images: Tensor, landmarks: Tensor, scale: Tensor) -> Tensor:
    """``images (N, 1, H, W)``, each slice mapped with its volume's ``landmarks (N, L)`` row."""
    out = torch.empty_like(images)
    rows = landmarks.double()
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    for k in range(len(uniq)):
        idx = torch.nonzero(inverse == k).reshape(-1)
        out[idx] = map_to_scale(images[idx], uniq[k], scale)
    return out


def standardise_crops(crops: Tensor, config: PreprocessConfig) -> tuple[Tensor, Tensor | None]:
    """A volume's raw crops ``(Z, h, w)`` as the model sees them, and with
    ``standardise = "histogram"`` its ``(1, L)`` landmarks (the images are then region
    z-scored; their fold's scale maps them later). Training and ``ada predict`` both call it."""
    if config.standardise == "none":
        return normalise(crops, config.normalize), None
    z = region_zscore(crops)
    if config.standardise == "zscore_cord":
        return z, None
    return z, landmarks_of(z, config.histogram_landmarks)[None]


def concat_landmarks(parts: Sequence[Tensor | None]) -> Tensor | None:
    """The landmark rows of concatenated slice sets (``SliceSet.concat``): None when no part
    has any; a mix of parts with and without them is an error."""
    have = {p is not None for p in parts}
    if have == {False}:
        return None
    if len(have) > 1:
        raise DataError("SliceSet.concat: some parts carry histogram landmarks and some do not "
                        "(they were preprocessed with different standardise settings)")  # fmt: skip
    return torch.cat(list(parts))  # type: ignore[arg-type]
