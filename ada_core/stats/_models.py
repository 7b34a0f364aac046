"""The results: frozen pydantic models, embedded as they are in a run's ``RunSummary``.

Undefined numbers are ``None`` with a ``note`` that says why, never NaN.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ada_core.errors import InputError, suggest

__all__ = ["Comparison", "Estimate", "Interval", "StudyStatistics"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class Interval(BaseModel):
    """A confidence interval and how it was computed."""

    model_config = _FROZEN

    low: float = Field(description="Lower end.")
    high: float = Field(description="Upper end.")
    level: float = Field(description="Confidence level, e.g. 0.95.")
    method: str = Field(description="How it was computed, e.g. 'Satterthwaite t (seeds x "
                        "subjects)', 'hierarchical bootstrap (seeds x subjects)'.")

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval."""
        return value < self.low or value > self.high


class Estimate(BaseModel):
    """One branch's mean of the subject-averaged metric on one set, over seeds."""

    model_config = _FROZEN

    branch: str
    set: str
    metric: str
    mean: float | None = Field(description="Mean over seeds and subjects of the subject "
                               "means (None when no subject has a defined mean).")
    ci: Interval | None = Field(description="Seeds and subjects both random (Satterthwaite "
                                "t); subjects only when there is one seed.")
    ci_t: Interval | None = Field(description="t over the seed means: seed-to-seed variation "
                                  "on these subjects (t over subject means with one seed).")
    ci_boot: Interval | None = Field(description="Hierarchical bootstrap over seeds and "
                                     "subjects (subjects only with one seed).")
    interval: str = Field(description="What the intervals cover: 'seeds and subjects' or "
                          "'subjects only (1 seed)'.")
    n_seeds: int
    n_subjects: int = Field(description="Subjects with a defined mean (in every seed).")
    n_slices: int = Field(description="Slices over all seeds.")
    n_undefined: int = Field(description="Of those, slices where the metric is undefined.")
    n_subjects_dropped: int = Field(0, description="Subjects without a defined mean in some "
                                    "seed (every slice undefined), left out.")
    higher_is_better: bool
    note: str = Field("", description="Why a number is missing, or a caveat.")


class Comparison(BaseModel):
    """A branch against a control on one set and metric, paired by seed and subject."""

    model_config = _FROZEN

    branch: str
    control: str
    set: str
    metric: str
    diff: float | None = Field(description="Mean paired difference, oriented so that positive = "
                        "the branch is better (control - branch for lower-is-better metrics).")
    orientation: str = Field(description="The difference in words, e.g. 'gradcam - random "
                             "(positive = gradcam better)'.")
    ci: Interval | None = Field(description="Satterthwaite t interval with the test's SE and "
                                "df: excludes 0 exactly when p < 1 - level.")
    ci_boot: Interval | None = Field(description="Hierarchical bootstrap percentile interval "
                                     "(seeds x subjects); narrower than nominal with few seeds.")
    p: float | None = Field(description="Two-sided p of `test`.")
    p_holm: float | None = Field(description="p Holm-corrected over all `holm_family` "
                                 "comparisons of the study.")
    holm_family: int = Field(description="Number of comparisons in the Holm family.")
    test: str = Field(description="Name of the test behind `p`.")
    effect_size: float | None = Field(description="Value of `effect`.")
    effect: str = Field(description="Name of the effect size.")
    se: float | None = Field(description="Standard error of `diff`.")
    df: float | None = Field(description="Degrees of freedom of the test.")
    var_seed: float | None = Field(description="Seed component of the differences' variance "
                                   "(None with one seed: not estimable).")
    var_subject: float = Field(description="Subject component of the differences' variance.")
    var_residual: float | None = Field(description="Seed x subject residual component.")
    interval: str = Field(description="'seeds and subjects' or 'subjects only (1 seed)'.")
    n_seeds: int
    n_subjects: int
    n_subjects_dropped: int = Field(0, description="Subjects left out: undefined in some seed.")
    mde: float | None = Field(description="Smallest difference detectable at `alpha` "
                              "(two-sided) with `power`, at this study's seeds and subjects.")
    resolve: float = Field(description="The difference `seeds_needed` is computed for.")
    seeds_needed: int | None = Field(description="Seeds (with these subjects) for an MDE <= "
                                     "`resolve`; None: see `seeds_note`.")
    seeds_note: str = Field("", description="Why `seeds_needed` is None, or a caveat.")
    mde_seeds_limit: float | None = Field(description="The MDE with infinitely many seeds "
                                          "(the subject term alone).")
    higher_is_better: bool
    note: str = Field("", description="Why a number is missing, or a caveat.")

    @property
    def significant(self) -> bool:
        """Holm-corrected p below 1 - level of the CI."""
        return (self.p_holm is not None and self.ci is not None
                and self.p_holm < 1 - self.ci.level)


class StudyStatistics(BaseModel):
    """Every estimate and comparison of a study, and the settings that produced them."""

    model_config = _FROZEN

    schema_version: int = Field(1, description="Bumped when fields change meaning.")
    branches: tuple[str, ...]
    controls: tuple[str, ...]
    sets: tuple[str, ...]
    metrics: tuple[str, ...]
    seeds: tuple[int, ...] = Field(description="Seeds found in the table.")
    level: float
    alpha: float
    power: float
    n_boot: int
    seed: int = Field(description="Seed of the bootstrap generator.")
    estimates: tuple[Estimate, ...]
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...] = ()

    def comparison(self, branch: str, control: str, set: str, metric: str) -> Comparison:
        """The comparison of ``branch`` against ``control`` on ``set`` and ``metric``."""
        for c in self.comparisons:
            if (c.branch, c.control, c.set, c.metric) == (branch, control, set, metric):
                return c
        have = sorted({f"{c.branch}/{c.control}/{c.set}/{c.metric}" for c in self.comparisons})
        raise InputError(f"no comparison {branch}/{control}/{set}/{metric}. "
                         + suggest(f"{branch}/{control}/{set}/{metric}", have))

    def estimate(self, branch: str, set: str, metric: str) -> Estimate:
        """The estimate of ``branch`` on ``set`` and ``metric``."""
        for e in self.estimates:
            if (e.branch, e.set, e.metric) == (branch, set, metric):
                return e
        have = sorted({f"{e.branch}/{e.set}/{e.metric}" for e in self.estimates})
        raise InputError(f"no estimate {branch}/{set}/{metric}. "
                         + suggest(f"{branch}/{set}/{metric}", have))
