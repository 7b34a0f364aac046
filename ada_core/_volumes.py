"""The data types a :class:`~ada_core.interfaces.SegDataset` gives: Subject and Volume."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Subject", "Volume"]


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
