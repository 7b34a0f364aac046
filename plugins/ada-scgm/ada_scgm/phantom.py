"""The procedural phantom: axial slices that look like T2*-weighted cervical cord MRI.

Each person gets an elliptic cord with a butterfly of brighter grey matter (four horns and a
commissure), a bright CSF ring, the dark bony canal and vertebral body, and textured muscle.
Each site has its own contrast (GM/WM ratio, CSF and muscle brightness), effective resolution
(acquired coarser, interpolated onto the grid) and noise (folded Gaussian, as in magnitude images); each scan its own bias field. Everything is drawn from
``seed``: the same config gives the same data, on any machine, for any ``size``.

By default the GM butterfly sits at the middle of the cord in every slice. ``gm_jitter_mm`` and
``gm_scale_jitter`` move and shrink it per slice inside the cord (clipped to the cord), drawn
from a generator of their own, so that nothing else in the scan changes.

The optional context cue is a small bright disc at a fixed offset from the middle of the GM
butterfly (``cue_anchor = "gm"``, default) or from the cord centre (``"cord"``), turning with the
cord; without jitter the two coincide. With jitter and ``cue_anchor = "gm"`` the cue tells where
the GM is, a shortcut a network can learn to lean on (more so with a faint GM,
``gm_contrast < 1``); ``cue_probability`` and ``cue_missing_sites`` make it absent in some slices
or sites (e.g. the validation site of a leave-one-site-out split), which is what ADA is meant to
make a network robust to.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ada_core import (ComponentConfig, DataError, SegDataset, Subject, Unused, Volume, tags,
                      used_if, used_unless,
                      used_when)

__all__ = ["PhantomConfig", "PhantomDataset", "generate"]

_Side = Annotated[int, Field(ge=16)]

#: Bump when the same config would render different data (it changes the fingerprint).
GENERATOR_VERSION = 1


_CUE = used_when("context_cue", True)
#: The cue's shape and place: nothing to draw when no slice shows it.
_SHOWN = tags(_CUE, used_unless("cue_probability", 0))
#: ...and nothing to draw when every site is one whose scans never show it.
_SEEN = used_if("some site is not in `cue_missing_sites`")


class PhantomConfig(ComponentConfig):
    n_subjects: int = Field(8, ge=1, description="Number of persons.")
    sessions: int = Field(1, ge=1, description="Scans per person (same anatomy, new noise).")
    slices_per_subject: int = Field(12, ge=1, description="Axial slices per scan.")
    size: tuple[_Side, _Side] = Field((200, 200), description="Generated (height, width) in pixels.")
    spacing: float = Field(0.25, gt=0, description="In-plane pixel size in mm.")
    slice_thickness: float = Field(3.0, gt=0, description="Slice thickness in mm.")
    sites: int = Field(3, ge=1, description="Number of sites (person p scans at site p % sites).")
    gm_contrast: float = Field(
        1.0, ge=0, description="Scales each site's GM-over-WM brightening (0: invisible GM)."
    )
    gm_jitter_mm: float = Field(
        0.0, ge=0, le=3, description="Per slice, move the GM butterfly by up to this many mm along "
        "each cord axis (uniform; clipped to the cord). 0: always at the cord centre.",
    )
    gm_scale_jitter: float = Field(
        0.0, ge=0, lt=1, description="Per slice, shrink the GM butterfly by a factor drawn "
        "uniformly from [1 - gm_scale_jitter, 1]. 0: full size.",
    )
    context_cue: bool = Field(False, description="Draw the context cue (a bright landmark).")
    cue_anchor: Literal["gm", "cord"] = Field(
        "gm", description="What cue_offset_mm is measured from: 'gm', the middle of the (jittered) "
        "GM butterfly, so the cue tells where the GM is; 'cord', the cord centre. Without GM "
        "jitter the two coincide.",
        json_schema_extra=tags(_SHOWN, used_unless("gm_jitter_mm", 0), _SEEN),
    )
    cue_offset_mm: tuple[float, float] = Field(
        (-7.0, 5.0), description="Cue centre from its anchor (cue_anchor), (rows, cols) in mm, "
        "turning with the cord; negative rows: anterior.",
        json_schema_extra=tags(_SHOWN, _SEEN),
    )
    cue_radius_mm: float = Field(
        1.0, gt=0, description="Radius of the cue disc in mm.",
        json_schema_extra=tags(_SHOWN, _SEEN),
    )
    cue_probability: float = Field(
        1.0, ge=0, le=1, description="Probability that a slice shows the cue.",
        json_schema_extra=tags(_CUE, _SEEN),
    )
    cue_missing_sites: tuple[int, ...] = Field(
        (), description="Sites (0-based) whose scans never show the cue.",
        json_schema_extra=_SHOWN,
    )
    seed: int = Field(0, description="Seed of everything random in the phantom.")

    def _inactive(self) -> list[Unused]:
        if not self.context_cue or not set(range(self.sites)) <= set(self.cue_missing_sites):
            return []  # (context_cue = false is the used_when tags' to report)
        names = ["cue_probability"]
        if self.cue_probability != 0:  # (else the used_unless tags report the others)
            names += ["cue_offset_mm", "cue_radius_mm"] + (["cue_anchor"] if self.gm_jitter_mm else [])
        why = (f"every site (0..{self.sites - 1}, {{prefix}}sites = {self.sites}) is in "
               "{prefix}cue_missing_sites, so no scan shows the cue")
        return [Unused(n, None, why=why, fix="leave a site out of {prefix}cue_missing_sites")
                for n in names]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([abs(int(k)) for k in key])


def _site(seed: int, site: int) -> dict[str, float]:
    r = _rng(seed, 1, site)
    return {
        "wm": r.uniform(0.40, 0.55), "gm_ratio": r.uniform(1.12, 1.30),
        "csf": r.uniform(0.85, 1.10), "muscle": r.uniform(0.30, 0.42),
        "bone": r.uniform(0.08, 0.18), "res_mm": r.uniform(0.25, 0.8),
        "noise": r.uniform(0.015, 0.05),
    }  # fmt: skip


def _anatomy(seed: int, person: int) -> dict[str, float]:
    r = _rng(seed, 2, person)
    return {
        "a": r.uniform(4.6, 5.6), "b": r.uniform(3.2, 3.9), "theta": r.uniform(-0.15, 0.15),
        "csf": r.uniform(1.4, 2.4), "bone": r.uniform(2.5, 3.5), "horn": r.uniform(0.9, 1.1),
        "dorsal": r.uniform(0.85, 1.15), "phase": r.uniform(0, 2 * math.pi),
        "body_gap": r.uniform(1.0, 2.5),
    }  # fmt: skip


def _membership(x: Tensor, y: Tensor, e: _Ellipse, edge: float) -> Tensor:
    """Membership in [0, 1] of ellipse ``e`` on the grid ``x (1|Z, 1, w)``, ``y (1|Z, h, 1)``.

    The border ramps over ``edge`` mm; ``(1 - q) / 2`` approximates the distance to the border
    in units of the semi-axis (exact at the border, where it matters), without a square root.
    """
    dx, dy = x - e.cx, y - e.cy
    u = (dx * e.cos + dy * e.sin).div_(e.ax)  # in place from here on: the same arithmetic,
    v = (dy * e.cos - dx * e.sin).div_(e.ay)  # without a fresh (Z, h, w) tensor per step
    q = u.mul_(u).add_(v.mul_(v))
    return q.neg_().add_(1).mul_(torch.minimum(e.ax, e.ay) / (2 * edge)).add_(0.5).clamp_(0, 1)


class _Ellipse:
    """An ellipse per slice: centre, semi-axes (mm) and angle, each ``(Z, 1, 1)``."""

    def __init__(self, cx: Tensor, cy: Tensor, ax: Tensor, ay: Tensor, ang: Tensor) -> None:
        z = ang.shape[0]
        f = lambda v: torch.as_tensor(v, dtype=torch.float32).expand(z, 1, 1)  # noqa: E731
        self.cx, self.cy, self.ax, self.ay = f(cx), f(cy), f(ax), f(ay)
        self.cos, self.sin = torch.cos(ang), torch.sin(ang)

    def box(self, grid: _Grid) -> tuple[slice, slice]:
        """Pixel rows and columns that hold the ellipse in every slice (with a margin)."""
        r = torch.maximum(self.ax, self.ay) + 2 * grid.sp
        rows = (self.cy - r, self.cy + r)
        cols = (self.cx - r, self.cx + r)
        return grid.span(rows, 0), grid.span(cols, 1)


class _Grid:
    """Pixel-centre coordinates in mm, centred on the image (rows: y, columns: x)."""

    def __init__(self, h: int, w: int, sp: float) -> None:
        self.h, self.w, self.sp = h, w, sp
        self.y = ((torch.arange(h, dtype=torch.float32) - (h - 1) / 2) * sp).view(1, h, 1)
        self.x = ((torch.arange(w, dtype=torch.float32) - (w - 1) / 2) * sp).view(1, 1, w)

    def span(self, lo_hi: tuple[Tensor, Tensor], axis: int) -> slice:
        n = (self.h, self.w)[axis]
        lo = math.floor(float(lo_hi[0].min()) / self.sp + (n - 1) / 2)
        hi = math.ceil(float(lo_hi[1].max()) / self.sp + (n - 1) / 2) + 1
        return slice(min(max(lo, 0), n), min(max(hi, 0), n))

    def member(self, e: _Ellipse, rows: slice, cols: slice) -> Tensor:
        return _membership(self.x[..., cols], self.y[:, rows], e, max(self.sp, 0.2))


def _paint(img: Tensor, grid: _Grid, e: _Ellipse, level: float | Tensor) -> None:
    """Blend ``level`` into ``img (Z, H, W)`` inside ellipse ``e``, in place, in its box only."""
    rows, cols = e.box(grid)
    img[:, rows, cols].lerp_(torch.tensor(level), grid.member(e, rows, cols))


class _Texture:
    """Smooth random texture, unit-ish variance: a sum of ``rank`` separable products.

    Only its factors, ``a (Z, H, rank)`` and ``b (Z, rank, W)``, are kept: ``level * (1 + amp *
    texture)`` is rendered on demand, on the whole image or a box, as one batched ``baddbmm``.
    """

    def __init__(self, gen: torch.Generator, z: int, h: int, w: int, rank: int = 4) -> None:
        a = F.interpolate(torch.randn(z, rank, 8, generator=gen), size=h, mode="linear")
        self.b = F.interpolate(torch.randn(z, rank, 8, generator=gen), size=w, mode="linear")
        self.a = a.transpose(1, 2) / math.sqrt(rank)

    def render(self, level: float, amp: float, rows: slice = slice(None),
               cols: slice = slice(None)) -> Tensor:  # fmt: skip
        """``level * (1 + amp * texture)`` on ``rows x cols``: a new ``(Z, h, w)`` tensor."""
        base = torch.tensor(level, dtype=torch.float32).view(1, 1, 1)
        return torch.baddbmm(base, self.a[:, rows], self.b[..., cols], alpha=level * amp)


def _area_down(img: Tensor, f: int) -> Tensor:
    """``F.interpolate(img[:, None], scale_factor=1 / f, mode="area")[:, 0]`` for ``img (Z, H, W)``.

    Where ``f`` divides both sides (and torch's output size agrees), sums ``f`` row and column
    views: the same means up to float rounding, about twice as fast as the adaptive pooling.
    """
    z, h, w = img.shape
    hl, wl = math.floor(h * (1 / f)), math.floor(w * (1 / f))
    if h % f or w % f or (hl, wl) != (h // f, w // f):
        return F.interpolate(img[:, None], scale_factor=1 / f, mode="area")[:, 0]
    rows = img.view(z, hl, f, w)
    acc = rows[:, :, 0].clone()
    for j in range(1, f):
        acc += rows[:, :, j]
    cols = acc.view(z, hl, wl, f)
    low = cols[..., 0].clone()
    for j in range(1, f):
        low += cols[..., j]
    return low.mul_(1 / (f * f))


def _gm_jitter(
    config: PhantomConfig, person: int, session: int
) -> tuple[Tensor | float, Tensor | float, Tensor | float]:
    """Per-slice GM shift along the cord's axes (mm) and scale, from a generator of its own.

    Returns plain zeros and one without jitter, so that the default arithmetic (and with it
    every byte of the default phantom) is unchanged.
    """
    if config.gm_jitter_mm == 0 and config.gm_scale_jitter == 0:
        return 0.0, 0.0, 1.0
    z = config.slices_per_subject
    r = _rng(config.seed, 4, person, session)
    shift = torch.from_numpy(r.uniform(-1, 1, (2, z, 1, 1))).float() * config.gm_jitter_mm
    scale = 1 - config.gm_scale_jitter * torch.from_numpy(r.uniform(0, 1, (z, 1, 1))).float()
    return shift[0], shift[1], scale


def _paint_cue(img: Tensor, grid: _Grid, centre: tuple[Tensor, Tensor], radius: float,
               ang: Tensor, show: Tensor) -> None:  # fmt: skip
    """The bright context cue, a disc of ``radius`` mm, in the slices ``show`` selects."""
    cue = _Ellipse(*centre, radius, radius, ang)
    cr, cc = cue.box(grid)
    img[:, cr, cc].lerp_(torch.tensor(1.35), grid.member(cue, cr, cc).mul_(show))


def _acquire(img: Tensor, grid: _Grid, site: dict, r: np.random.Generator,
             gen: torch.Generator) -> Tensor:  # fmt: skip
    """The scanner's view of the painted ``img (Z, H, W)``: the site's coarser resolution
    interpolated back onto the grid, a smooth bias field and folded Gaussian noise."""
    h, w, sp = grid.h, grid.w, grid.sp
    noise = None  # the noise reuses the full-size buffer that resampling frees, if any
    factor = max(1, round(site["res_mm"] / sp))
    if factor > 1:  # acquired at a coarser resolution, interpolated onto the grid
        low = _area_down(img, factor)[:, None]
        noise, img = img, F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        img = img[:, 0]
    coef = r.uniform(-0.15, 0.15, 3)
    half = (max(h, w) - 1) / 2 * sp
    gx, gy = grid.x / half, grid.y / half
    bias = 1 + float(coef[0]) * gx + float(coef[1]) * gy + float(coef[2]) * (gx * gx + gy * gy)
    noise = torch.empty_like(img) if noise is None else noise
    noise.normal_(generator=gen)  # the values of torch.randn(z, h, w, generator=gen)
    return img.mul_(bias).add_(noise, alpha=site["noise"]).abs_()  # magnitude: folded (Rician-like)


def generate(config: PhantomConfig, person: int, session: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Render one scan.

    Args:
        config: the phantom settings.
        person: person index in ``[0, n_subjects)`` (fixes anatomy and site).
        session: session index in ``[0, sessions)`` (fixes position, noise, bias field, cue).

    Returns:
        ``(image, gm, cord)``, each ``(Z, H, W)`` in display orientation (rows from anterior to
        posterior); image float32, gm and cord uint8 in {0, 1}.
    """
    z, (h, w), sp = config.slices_per_subject, config.size, config.spacing
    site_idx = person % config.sites
    site, anat = _site(config.seed, site_idx), _anatomy(config.seed, person)
    r = _rng(config.seed, 3, person, session)
    gen = torch.Generator().manual_seed(int(r.integers(2**62)))
    grid = _Grid(h, w, sp)
    zz = torch.arange(z, dtype=torch.float32).view(z, 1, 1)
    wave = torch.sin(zz * 0.35 + anat["phase"])
    cy = float(r.uniform(-1.5, 1.5)) + 0.15 * wave
    cx = float(r.uniform(-1.5, 1.5)) + 0.1 * torch.cos(zz * 0.3 + anat["phase"])
    ang = torch.full_like(zz, anat["theta"] + float(r.uniform(-0.05, 0.05)))
    a, b = anat["a"] * (1 + 0.06 * wave), torch.full_like(zz, anat["b"])
    c, s = torch.cos(ang), torch.sin(ang)

    jx, jy, k = _gm_jitter(config, person, session)  # GM shift (cord frame, mm), scale

    def gm_at(u: float, v: float) -> tuple[Tensor, Tensor]:  # butterfly-normalised -> mm
        du, dv = jx + k * u * a, jy + k * v * b
        return cx + du * c - dv * s, cy + du * s + dv * c

    texture = _Texture(gen, z, h, w)
    img = texture.render(site["muscle"], 0.12)
    canal = anat["csf"] + anat["bone"]
    by = cy - (b + canal + anat["body_gap"] + 5.5)
    _paint(img, grid, _Ellipse(cx, by, 9.0, 6.0, ang), site["bone"] * 1.6)
    _paint(img, grid, _Ellipse(cx, cy, a + canal, b + canal, ang), site["bone"])
    _paint(img, grid, _Ellipse(cx, cy, a + anat["csf"], b + anat["csf"], ang), site["csf"])
    cord_e = _Ellipse(cx, cy, a, b, ang)
    rows, cols = cord_e.box(grid)
    cord = grid.member(cord_e, rows, cols)
    hv, hd = anat["horn"], anat["dorsal"]
    ka, kb = k * a, k * b
    gm = grid.member(_Ellipse(*gm_at(0, 0.05), 0.38 * ka, 0.12 * kb, ang), rows, cols)  # commissure
    for side in (-1.0, 1.0):
        horns = (
            _Ellipse(*gm_at(side * 0.33, -0.33), 0.24 * ka * hv, 0.34 * kb * hv, ang + side * 0.5),
            _Ellipse(*gm_at(side * 0.24, 0.48), 0.09 * ka * hd, 0.42 * kb * hd, ang - side * 0.45),
        )
        for e in horns:
            gm = torch.maximum(gm, grid.member(e, rows, cols), out=gm)
    gm.mul_(cord >= 0.99)  # grey matter stays inside the cord
    wm = texture.render(site["wm"], 0.03, rows, cols)
    sub = img[:, rows, cols].lerp_(wm, cord)
    sub.lerp_(wm.mul_(1 + (site["gm_ratio"] - 1) * config.gm_contrast), gm)
    show = (torch.rand(z, 1, 1, generator=gen) < config.cue_probability).float()  # always drawn:
    if config.context_cue and site_idx not in config.cue_missing_sites:  # the cue changes nothing else
        oy, ox = config.cue_offset_mm
        if config.cue_anchor == "gm":
            ox, oy = ox + jx, oy + jy
        centre = (cx + ox * c - oy * s, cy + ox * s + oy * c)
        _paint_cue(img, grid, centre, config.cue_radius_mm, ang, show)
    img = _acquire(img, grid, site, r, gen)
    gm_full = torch.zeros(z, h, w, dtype=torch.uint8)
    cord_full = torch.zeros(z, h, w, dtype=torch.uint8)
    gm_full[:, rows, cols] = (gm >= 0.5).to(torch.uint8)
    cord_full[:, rows, cols] = (cord >= 0.5).to(torch.uint8)
    return img, gm_full, cord_full


def _volume(x: Tensor) -> np.ndarray:
    """Display slices ``(Z, H, W)`` -> canonical ``(X, Y, Z)`` (the inverse of ada_core.data's view)."""
    return x.numpy()[:, ::-1, :].transpose(2, 1, 0)


class PhantomDataset(SegDataset):
    """The embedded default data set: nothing to download, deterministic by seed."""

    name: ClassVar[str] = "phantom"
    Config = PhantomConfig
    config: PhantomConfig

    def __init__(self, config: PhantomConfig | None = None) -> None:
        super().__init__(config)
        bad = [s for s in self.config.cue_missing_sites if not 0 <= s < self.config.sites]
        if bad:
            raise DataError(f"dataset 'phantom': cue_missing_sites {bad} are not sites 0.."
                            f"{self.config.sites - 1}")  # fmt: skip

    def _id(self, person: int, session: int) -> str:
        base = f"phantom-{person:03d}"
        return base if self.config.sessions == 1 else f"{base}-ses{session + 1}"

    def subjects(self) -> list[Subject]:
        cfg = self.config
        return [
            Subject(self._id(p, k), f"site{p % cfg.sites}", f"phantom-{p:03d}",
                    None if cfg.sessions == 1 else str(k + 1))  # fmt: skip
            for p in range(cfg.n_subjects)
            for k in range(cfg.sessions)
        ]

    def load(self, subject: Subject) -> Volume:
        cfg = self.config
        index = {self._id(p, k): (p, k) for p in range(cfg.n_subjects) for k in range(cfg.sessions)}
        if subject.id not in index:
            raise DataError(f"dataset 'phantom': no subject {subject.id!r} "
                            f"(ids phantom-000 .. phantom-{cfg.n_subjects - 1:03d})")  # fmt: skip
        image, gm, cord = generate(cfg, *index[subject.id])
        return Volume(
            subject=subject,
            image=_volume(image),
            mask=_volume(gm),
            spacing=(cfg.spacing, cfg.spacing, cfg.slice_thickness),
            cord=_volume(cord),
            source=f"phantom:{subject.id}",
        )

    def fingerprint(self) -> str:
        return f"phantom:v{GENERATOR_VERSION}:{self.config.model_dump_json()}"
