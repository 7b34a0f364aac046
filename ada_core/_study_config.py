"""The ``[study]`` table: the question the study answers (its primary endpoint) and its levels.

These settings change no job's result, only the analysis (``ada aggregate`` can be rerun with
other ones). Names are checked against the run plan by ``build_plan``: the set must be scored
by the study and the controls must be its control branches.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ada_core.fieldtags import Settings

__all__ = ["PrimaryConfig", "StudyConfig"]

class PrimaryConfig(Settings):
    """The primary endpoint: each method against the primary control(s) on one set and metric,
    Holm-corrected over those tests only. Everything else is secondary (exploratory)."""

    set: str | None = Field(
        None, description="Evaluation set: 'test' (the held-out persons), 'val', 'robustness', "
        "'robustness_near', 'context' or the label of an [[evaluate]] set. None: 'test' when "
        "the split holds a test part, else 'val'.",
    )
    metric: str = Field("dsc", description="Metric of the endpoint (a column of results.csv).")
    control: str | tuple[str, ...] | None = Field(
        None, description="Control branch label(s) the methods are tested against. None: "
        "the branches of the 'random' control when the study has them, else every control.",
    )

    @field_validator("control", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value


class StudyConfig(Settings):
    """What the study's verdict answers and at which levels."""

    primary: PrimaryConfig = Field(default_factory=PrimaryConfig,
                                   description="The primary endpoint.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise level of every family "
                         "(primary, method pairs, secondary) and of the omnibus test.")
    resolve: float = Field(1.0, gt=0, description="The smallest difference of interest, in the "
                           "primary metric's units (DSC: percentage points): the verdict says "
                           "how many seeds and persons would resolve it.")
