"""Classical augmentations, batched on the device (image and mask together).

(Being implemented: see issue 7.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AugmentConfig"]


class AugmentConfig(BaseModel):
    """The paper's Table 2 augmentations; each transform applies with its probability."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Apply classical augmentation during training.")
    rotation_deg: float = Field(4.6, ge=0, description="Maximum rotation in degrees (+-).")
    shift: float = Field(0.03, ge=0, lt=1, description="Maximum shift as a fraction of the size (+-).")
    scale: tuple[float, float] = Field((0.98, 1.02), description="Range of the scale factor.")
    channel_shift: float = Field(0.17, ge=0, description="Maximum intensity shift (+-).")
    elastic_alpha: float = Field(30.0, ge=0, description="Elastic deformation strength (pixels).")
    elastic_sigma: float = Field(4.0, gt=0, description="Elastic deformation smoothness (pixels).")
    p_affine: float = Field(1.0, ge=0, le=1, description="Probability of the affine transform.")
    p_channel_shift: float = Field(1.0, ge=0, le=1, description="Probability of the intensity shift.")
    p_elastic: float = Field(0.5, ge=0, le=1, description="Probability of the elastic deformation.")
