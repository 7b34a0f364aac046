"""Shared preprocessing: volumes -> 2-D slice tensors, and subject-level splits.

(Being implemented: see issue 5.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

__all__ = ["PreprocessConfig", "SliceSet", "SplitConfig"]


@dataclass
class SliceSet:
    """2-D axial slices with their provenance; what every engine trains and evaluates on.

    Attributes:
        images: ``(N, 1, H, W)`` float32, normalised.
        masks: ``(N, 1, H, W)`` float32 grey-matter masks in {0, 1}.
        spacing: ``(N, 2)`` float32 pixel size in mm (rows, columns).
        slice_index: ``(N,)`` int64 index of the slice in its volume.
        subject: subject id of each slice.
        site: acquisition site of each slice.
        group: split key of each slice (sessions and raters of one person share it).
    """

    images: Tensor
    masks: Tensor
    spacing: Tensor
    slice_index: Tensor
    subject: list[str]
    site: list[str]
    group: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> SliceSet:
        """The same slices with tensors on ``device`` (metadata lists are shared)."""
        return SliceSet(
            self.images.to(device),
            self.masks.to(device),
            self.spacing.to(device),
            self.slice_index.to(device),
            self.subject,
            self.site,
            self.group,
        )

    def subset(self, index: Sequence[int] | Tensor) -> SliceSet:
        """The slices at ``index``, in that order."""
        idx = torch.as_tensor(index, dtype=torch.long)
        rows = idx.tolist()
        dev = self.images.device
        return SliceSet(
            self.images[idx.to(dev)],
            self.masks[idx.to(dev)],
            self.spacing[idx.to(self.spacing.device)],
            self.slice_index[idx.to(self.slice_index.device)],
            [self.subject[i] for i in rows],
            [self.site[i] for i in rows],
            [self.group[i] for i in rows],
        )


class PreprocessConfig(BaseModel):
    """How volumes become slices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spacing: float = Field(0.25, gt=0, description="Target in-plane voxel size in mm.")
    size: tuple[int, int] = Field((200, 200), description="Crop (height, width) in pixels.")
    normalize: Literal["zscore", "minmax", "none"] = Field(
        "zscore", description="Per-slice intensity normalisation."
    )
    drop_empty: bool = Field(True, description="Drop slices without grey matter.")
    cache: bool = Field(True, description="Cache preprocessed slices on disk.")


class SplitConfig(BaseModel):
    """How subjects are split into training and validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["fraction", "site"] = Field(
        "fraction", description="'fraction': seeded random subjects; 'site': leave one site out."
    )
    val_fraction: float = Field(
        0.2, ge=0, lt=1, description="Fraction of subjects (persons) held out for validation."
    )
    val_site: str | None = Field(None, description="Site held out when method = 'site'.")
    seed: int = Field(0, description="Seed of the random subject split.")
