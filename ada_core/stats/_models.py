"""The results: frozen pydantic models, embedded as they are in a run's ``RunSummary``.

Undefined numbers are ``None`` with a ``note`` that says why, never NaN. Every count is of
persons (``n_persons``): the scans of one person (sessions, raters: ``n_subjects``) are averaged
within the person before anything is compared.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ada_core.errors import InputError, suggest

__all__ = ["Comparison", "Estimate", "Interval", "Omnibus", "PrimaryEndpoint", "StudyStatistics"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)

Family = Literal["primary", "pairs", "secondary"]


class Interval(BaseModel):
    """A confidence interval and how it was computed."""

    model_config = _FROZEN

    low: float = Field(description="Lower end.")
    high: float = Field(description="Upper end.")
    level: float = Field(description="Confidence level, e.g. 0.95.")
    method: str = Field(description="How it was computed, e.g. 'Satterthwaite t (seeds x "
                        "persons), logit scale'.")

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval."""
        return value < self.low or value > self.high


class Estimate(BaseModel):
    """One branch's mean of the person-averaged metric on one set."""

    model_config = _FROZEN

    branch: str
    set: str
    metric: str
    mean: float | None = Field(description="Mean over seeds and persons of the person means "
                               "(with folds: the mean of the fold means); None when no "
                               "person has a defined mean.")
    ci: Interval | None = Field(description="The design's t interval (kept inside the metric's "
                                "bounds on the logit scale for bounded metrics).")
    ci_boot: Interval | None = Field(description="Two-way bootstrap over seeds and persons "
                                     "(one fold, at least 2 of each); narrower than nominal "
                                     "with few seeds.")
    design: str = Field(description="'crossed', 'persons' (1 seed), 'seeds' (1 person), "
                        "'folds' or 'none'.")
    interval: str = Field(description="What the interval covers, in words.")
    n_seeds: int
    n_persons: int = Field(description="Persons with a defined mean in every seed.")
    n_folds: int = 1
    n_subjects: int = Field(description="Their scans (sessions, raters), averaged within person.")
    n_slices: int = Field(description="Slices over all seeds.")
    n_undefined: int = Field(description="Of those, slices where the metric is undefined.")
    n_persons_dropped: int = Field(0, description="Persons without a defined mean in some seed.")
    higher_is_better: bool
    note: str = Field("", description="Why a number is missing, or a caveat.")


class Comparison(BaseModel):
    """A branch against another on one set and metric, paired by seed and person."""

    model_config = _FROZEN

    branch: str
    control: str = Field(description="The other branch: a control, or a second method "
                         "(family 'pairs').")
    set: str
    metric: str
    family: Family = Field(description="'primary' (the declared endpoint: each method against "
                           "the primary control), 'pairs' (method against method) or "
                           "'secondary' (everything else: exploratory).")
    diff: float | None = Field(description="Mean paired difference, oriented so that positive = "
                               "the branch is better.")
    orientation: str
    ci: Interval | None = Field(description="t interval with the test's SE and df: excludes 0 "
                                "exactly when p < 1 - level (before Holm).")
    ci_boot: Interval | None = None
    p: float | None = Field(description="Two-sided p of `test`; None where the design cannot "
                            "support a claim (one seed, one person).")
    p_holm: float | None = Field(description="p Holm-corrected within the family.")
    family_size: int = Field(description="Tests in the Holm family.")
    alpha: float = Field(description="Family-wise level of the family.")
    test: str
    effect_size: float | None = Field(description="Cohen's d_z (3 persons or more).")
    effect: str
    se: float | None
    df: float | None
    design: str
    var_seed: float | None = Field(description="Seed mean square / (S N): the variance the "
                                   "seeds contribute (with their residual share).")
    var_person: float | None = Field(description="Person variance component / N.")
    n_seeds: int
    n_persons: int
    n_folds: int = 1
    n_persons_dropped: int = 0
    mde: float | None = Field(description="Smallest difference detected with `power` by a "
                              "two-sided test at `mde_alpha` (exact noncentral t).")
    mde_alpha: float | None = Field(description="The level a claim needs: Holm's first step "
                                    "of the family (alpha / family size).")
    resolve: float = Field(description="The difference `seeds_needed` is computed for.")
    seeds_needed: int | None
    persons_needed: int | None
    needed_note: str = ""
    mde_seeds_limit: float | None = Field(description="The MDE with infinitely many seeds.")
    higher_is_better: bool
    note: str = ""

    @property
    def significant(self) -> bool:
        """Holm-corrected p below the family's level."""
        return self.p_holm is not None and self.p_holm < self.alpha


class Omnibus(BaseModel):
    """Whether the methods differ from each other at all (one F test over every method)."""

    model_config = _FROZEN

    set: str
    metric: str
    methods: tuple[str, ...]
    test: str
    f: float | None
    df1: float | None
    df2: float | None
    p: float | None
    alpha: float
    n_seeds: int
    n_persons: int
    n_folds: int = 1
    note: str = ""

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < self.alpha


class PrimaryEndpoint(BaseModel):
    """The declared question: each method against the primary control(s) on one set."""

    model_config = _FROZEN

    set: str
    metric: str
    controls: tuple[str, ...]


class StudyStatistics(BaseModel):
    """Every estimate, comparison and test of a study, and the settings that produced them."""

    model_config = _FROZEN

    schema_version: int = Field(2, description="Bumped when fields change meaning.")
    branches: tuple[str, ...] = Field(description="The methods compared.")
    controls: tuple[str, ...]
    sets: tuple[str, ...]
    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    primary: PrimaryEndpoint | None
    level: float
    alpha: float
    power: float
    n_boot: int
    seed: int = Field(description="Seed of the bootstrap generator.")
    estimates: tuple[Estimate, ...]
    comparisons: tuple[Comparison, ...]
    omnibus: Omnibus | None = None
    notes: tuple[str, ...] = ()

    def family(self, name: Family) -> list[Comparison]:
        return [c for c in self.comparisons if c.family == name]

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
