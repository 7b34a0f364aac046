"""Segmentation metrics as in the paper's Table 1: DSC, TPR, TNR, PPV (percent), HSD, HD95 (mm).

Pure batched torch functions, usable on any device:

- :func:`segmentation_metrics`: per slice, ``(B,)`` tensors.
- :func:`volume_metrics` / :func:`per_volume_metrics`: per subject volume.
- :func:`summarize`: means, standard deviations and empty-case counts for a table row.

Definitions (``tp, fp, fn, tn`` count pixels or voxels)::

    DSC = 200 tp / (2 tp + fp + fn)     TPR = 100 tp / (tp + fn)
    TNR = 100 tn / (tn + fp)            PPV = 100 tp / (tp + fp)

Surface distances (``hausdorff="boundary"``, the default) follow medpy's ``hd`` and ``hd95``:
the boundary of a mask is the mask minus its binary erosion by the cross-shaped structuring
element (4-connectivity in 2-D, 6 in 3-D; outside the image counts as background, so mask
pixels on the image border are boundary). With ``d(A -> B)`` the distances in millimetres from
each boundary point of A to the nearest boundary point of B (voxel spacing applied per axis,
anisotropic allowed), ``HSD = max(max d(P -> T), max d(T -> P))`` and ``HD95`` is the 95th
percentile (linear interpolation) of ``d(P -> T)`` and ``d(T -> P)`` pooled together.
``hd95_monai`` is MONAI's convention (``compute_hausdorff_distance(percentile=95)``): the
larger of the two directed 95th percentiles; on scattered predictions it can differ from the
pooled one by a millimetre or more.

``hausdorff="legacy"`` sets ``hsd`` to what medicaltorch and ivadomed compute:
``scipy.spatial.distance.directed_hausdorff(pred, target)[0]`` on the raw 2-D arrays. That
treats every image *row* as one point in ``R^W`` and is directed only (prediction to target),
so a mask shifted along the rows scores 0 and the value is not in millimetres. It is wrong as a
surface distance and is there only to compare with published numbers that used it; ``hd95``
stays the boundary HD95.

Empty masks (``empty_policy``); ``pred_empty`` and ``target_empty`` flags are always returned
and :func:`summarize` counts them:

- ``"nan"`` (default): a ratio whose denominator is 0 and every distance involving an empty
  boundary is NaN; :func:`summarize` leaves NaNs out of means and reports how many values each
  mean used. Defined values stay: a prediction on an empty target has DSC 0 and PPV 0.
- ``"bounded"``: every value is finite. An undefined ratio is 100 when prediction and target
  are equal (both empty) and 0 otherwise; an undefined distance is 0 when both masks are empty
  and otherwise the field-of-view diagonal in millimetres (the largest distance possible).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from ada_core._metric_checks import check_masks, check_options, check_spacing
from ada_core.errors import InputError
from ada_core.surface import directed_sets, distance_dtype, hd95_directed_max, hsd, hsd_hd95

__all__ = [
    "DISTANCES",
    "EmptyPolicy",
    "HausdorffMode",
    "concat_metrics",
    "legacy_hausdorff",
    "per_volume_metrics",
    "segmentation_metrics",
    "summarize",
    "volume_metrics",
]

HausdorffMode = Literal["boundary", "legacy"]
EmptyPolicy = Literal["nan", "bounded"]
#: The surface-distance metrics of :func:`segmentation_metrics`, which its ``distances`` selects.
DISTANCES = ("hsd", "hd95", "hd95_monai")


def legacy_hausdorff(pred: Tensor, target: Tensor) -> Tensor:
    """medicaltorch/ivadomed ``hausdorff_score``: ``directed_hausdorff(pred, target)[0]``.

    Wrong as a surface distance (rows are points; see the module docstring); for comparison
    with published numbers only.

    Args:
        pred: ``(B, 1, H, W)`` binary.
        target: ``(B, 1, H, W)`` binary.

    Returns:
        ``(B,)`` float64 (pixel units, no spacing).
    """
    check_masks(pred, target, "legacy_hausdorff")
    dt = distance_dtype(pred.device)
    p, t = pred[:, 0].to(dt), target[:, 0].to(dt)
    d = torch.cdist(p, t, compute_mode="donot_use_mm_for_euclid_dist")  # (B, H, H)
    return d.amin(2).amax(1)


def _ratio(num: Tensor, den: Tensor, equal: Tensor, policy: str) -> Tensor:
    undefined_value = torch.where(equal, 100.0, 0.0) if policy == "bounded" else float("nan")
    return torch.where(den > 0, 100.0 * num / den.clamp_min(1), undefined_value)


def _bound_distance(value: Tensor, both_empty: Tensor, diagonal: Tensor, policy: str) -> Tensor:
    if policy != "bounded":
        return value
    fallback = torch.where(both_empty, torch.zeros_like(diagonal), diagonal)
    return torch.where(torch.isnan(value), fallback, value)


def _counts(pred: Tensor, target: Tensor, dims: tuple[int, ...]) -> dict[str, Tensor]:
    """Confusion counts of bool masks over ``dims``, in the distance dtype (exact integers)."""
    dt = distance_dtype(pred.device)
    n = math.prod(pred.shape[d] for d in dims)
    acc = torch.int32 if n < 2**31 else torch.int64

    def count(x: Tensor) -> Tensor:
        # Summing bytes into int32 is several times faster on CPU than summing bools.
        return x.view(torch.uint8).sum(dims, dtype=acc).to(dt)

    tp, n_pred, n_target = count(pred & target), count(pred), count(target)
    fp, fn = n_pred - tp, n_target - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn}


def _ratios(c: dict[str, Tensor], equal: Tensor, policy: str) -> dict[str, Tensor]:
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {
        "dsc": _ratio(2 * tp, 2 * tp + fp + fn, equal, policy),
        "tpr": _ratio(tp, tp + fn, equal, policy),
        "tnr": _ratio(tn, tn + fp, equal, policy),
        "ppv": _ratio(tp, tp + fp, equal, policy),
    }


def segmentation_metrics(
    pred: Tensor,
    target: Tensor,
    spacing: Tensor | Sequence[float],
    *,
    hausdorff: HausdorffMode = "boundary",
    empty_policy: EmptyPolicy = "nan",
    chunk: int = 256,
    distances: Sequence[str] = DISTANCES,
) -> dict[str, Tensor]:
    """Per-slice metrics.

    Args:
        pred: ``(B, 1, H, W)`` predicted masks in {0, 1} (bool or numeric).
        target: ``(B, 1, H, W)`` ground truth in {0, 1}.
        spacing: ``(B, 2)`` pixel size in mm (rows, cols), or one ``(2,)`` for all slices.
        hausdorff: ``"boundary"`` (mm surface distance) or ``"legacy"`` (see module docstring).
        empty_policy: ``"nan"`` or ``"bounded"`` (see module docstring).
        chunk: slices per distance computation (bounds memory).
        distances: which of ``hsd``, ``hd95``, ``hd95_monai`` to compute (the others are left
            out of the result): the boundary search is skipped when none is asked for, the
            percentile sort when only ``hsd`` is. Each value is the same as with all three.

    Returns:
        ``(B,)`` float64 tensors ``dsc``, ``tpr``, ``tnr``, ``ppv`` (percent), the asked
        ``hsd``, ``hd95``, ``hd95_monai`` (mm), and ``(B,)`` bool ``pred_empty``,
        ``target_empty``; on the inputs' device.
    """
    owner = "segmentation_metrics"
    check_masks(pred, target, owner)
    check_options(hausdorff, empty_policy, owner)
    unknown = [d for d in distances if d not in DISTANCES]
    if isinstance(distances, str) or unknown:
        raise InputError(f"{owner}: distances must be a list of {list(DISTANCES)}, got "
                         f"{distances!r}")  # fmt: skip
    b, _, h, w = pred.shape
    dt = distance_dtype(pred.device)
    sp = check_spacing(spacing, b, 2, owner).to(pred.device, dt)
    p, t = pred[:, 0].bool(), target[:, 0].bool()
    c = _counts(p, t, (1, 2))
    pred_empty, target_empty = (c["tp"] + c["fp"]) == 0, (c["tp"] + c["fn"]) == 0
    out = _ratios(c, (c["fp"] + c["fn"]) == 0, empty_policy)
    wanted = [d for d in DISTANCES if d in distances]
    out.update(_distances(p, t, sp, wanted, hausdorff == "legacy", chunk))
    if hausdorff == "legacy" and "hsd" in wanted:
        out["hsd"] = legacy_hausdorff(pred, target)
    diagonal = ((sp * torch.tensor([h - 1, w - 1], dtype=dt, device=sp.device)) ** 2).sum(1).sqrt()
    for key in wanted:
        out[key] = _bound_distance(out[key], pred_empty & target_empty, diagonal, empty_policy)
    out["pred_empty"], out["target_empty"] = pred_empty, target_empty
    return out


def _distances(p: Tensor, t: Tensor, sp: Tensor, wanted: list[str], legacy: bool,
               chunk: int) -> dict[str, Tensor]:  # fmt: skip
    """The ``wanted`` boundary distances of bool ``(B, H, W)`` masks, chunk by chunk."""
    search = [d for d in wanted if not (legacy and d == "hsd")]
    if not search:
        return {}
    parts: dict[str, list[Tensor]] = {d: [] for d in search}
    for s in range(0, p.shape[0], max(1, chunk)):
        e = s + max(1, chunk)
        d_pt, d_tp = directed_sets(p[s:e], t[s:e], sp[s:e])
        if "hd95" in parts:
            a, q = hsd_hd95(d_pt, d_tp)
            parts["hd95"].append(q)
        elif "hsd" in parts:
            a = hsd(d_pt, d_tp)
        if "hsd" in parts:
            parts["hsd"].append(a)
        if "hd95_monai" in parts:
            parts["hd95_monai"].append(hd95_directed_max(d_pt, d_tp))
    return {d: torch.cat(v) for d, v in parts.items()}


def volume_metrics(
    pred: Tensor,
    target: Tensor,
    spacing: Tensor | Sequence[float],
    slice_thickness: float | None,
    *,
    empty_policy: EmptyPolicy = "nan",
) -> dict[str, Tensor]:
    """Metrics of one subject volume made of its slices stacked in order.

    Args:
        pred: ``(S, 1, H, W)`` predicted masks of the subject's consecutive slices.
        target: ``(S, 1, H, W)`` ground truth.
        spacing: in-plane pixel size ``(2,)`` mm (rows, cols), the same for every slice.
        slice_thickness: distance between slice centres in mm. ``None`` (unknown) treats the
            slices as infinitely far apart: a boundary point is matched only within its own
            slice, the volume HSD is the largest per-slice distance, and a slice where exactly
            one of the two masks is empty makes the distances undefined (NaN or bounded).
        empty_policy: ``"nan"`` or ``"bounded"``.

    Returns:
        0-dim float64 tensors ``dsc``, ``tpr``, ``tnr``, ``ppv``, ``hsd``, ``hd95`` and 0-dim bool
        ``pred_empty``, ``target_empty``.
    """
    owner = "volume_metrics"
    check_masks(pred, target, owner)
    check_options("boundary", empty_policy, owner)
    s, _, h, w = pred.shape
    dt = distance_dtype(pred.device)
    sp = check_spacing(spacing, 1, 2, owner)[0]
    if slice_thickness is not None and not (float(slice_thickness) > 0):
        raise InputError(
            f"{owner}: slice_thickness must be > 0 mm or None, got {slice_thickness!r}"
        )
    p, t = pred[:, 0].bool(), target[:, 0].bool()
    c = _counts(p, t, (0, 1, 2))
    pred_empty, target_empty = (c["tp"] + c["fp"]) == 0, (c["tp"] + c["fn"]) == 0
    out = _ratios(c, (c["fp"] + c["fn"]) == 0, empty_policy)
    if slice_thickness is None:
        d_pt, d_tp = directed_sets(p, t, sp.expand(s, 2).to(pred.device, dt))
        d_pt, d_tp = d_pt.reshape(1, -1), d_tp.reshape(1, -1)
        extent = sp.to(dt) * torch.tensor([h - 1, w - 1], dtype=dt)
    else:
        sp3 = torch.cat([torch.tensor([float(slice_thickness)], dtype=torch.float64), sp])
        d_pt, d_tp = directed_sets(p[None], t[None], sp3[None].to(pred.device, dt))
        extent = sp3.to(dt) * torch.tensor([s - 1, h - 1, w - 1], dtype=dt)
    hsd, hd95 = hsd_hd95(d_pt, d_tp)
    diagonal = (extent**2).sum().sqrt().to(pred.device)
    out["hsd"] = _bound_distance(hsd[0], pred_empty & target_empty, diagonal, empty_policy)
    out["hd95"] = _bound_distance(hd95[0], pred_empty & target_empty, diagonal, empty_policy)
    out["pred_empty"], out["target_empty"] = pred_empty, target_empty
    return out


def per_volume_metrics(
    pred: Tensor,
    target: Tensor,
    spacing: Tensor | Sequence[float],
    groups: Tensor,
    slice_thickness: float | Sequence[float] | None = None,
    *,
    empty_policy: EmptyPolicy = "nan",
) -> dict[str, Tensor]:
    """:func:`volume_metrics` for every subject in a batch of slices.

    Args:
        pred: ``(B, 1, H, W)`` predicted masks.
        target: ``(B, 1, H, W)`` ground truth.
        spacing: ``(B, 2)`` or ``(2,)`` in-plane pixel size in mm; constant within a subject.
        groups: ``(B,)`` integer subject id of each slice; a subject's slices are taken in
            batch order (give them in anatomical order).
        slice_thickness: one value for all subjects, one per subject (in sorted id order), or
            None (unknown; see :func:`volume_metrics`).
        empty_policy: ``"nan"`` or ``"bounded"``.

    Returns:
        ``(G,)`` tensors as :func:`volume_metrics`, subjects in sorted id order, plus ``group``
        ``(G,)`` long with the ids.
    """
    owner = "per_volume_metrics"
    check_masks(pred, target, owner)
    b = pred.shape[0]
    sp = check_spacing(spacing, b, 2, owner)
    groups = torch.as_tensor(groups)
    if groups.shape != (b,) or groups.is_floating_point():
        raise InputError(
            f"{owner}: groups must be a ({b},) integer tensor (subject id per slice), got "
            f"{tuple(groups.shape)} {groups.dtype}"
        )
    ids = torch.unique(groups.cpu())
    if slice_thickness is None or isinstance(slice_thickness, (int, float)):
        thickness = [slice_thickness] * len(ids)
    else:
        thickness = [float(v) for v in slice_thickness]
        if len(thickness) != len(ids):
            raise InputError(
                f"{owner}: slice_thickness has {len(thickness)} values for {len(ids)} subjects"
            )
    rows: list[dict[str, Tensor]] = []
    for g, thick in zip(ids.tolist(), thickness, strict=True):  # a loop over subjects, not slices
        sel = (groups.cpu() == g).nonzero()[:, 0]
        if not bool((sp[sel] == sp[sel[0]]).all()):
            raise InputError(
                f"{owner}: subject {g} has slices with different spacing "
                f"{sp[sel].unique(dim=0).tolist()}; a volume needs one in-plane spacing"
            )
        dev_sel = sel.to(pred.device)
        rows.append(
            volume_metrics(
                pred[dev_sel], target[dev_sel], sp[sel[0]], thick, empty_policy=empty_policy
            )
        )
    out = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    out["group"] = ids.to(pred.device)
    return out


def concat_metrics(parts: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate per-slice metric dicts of several batches (same keys in each)."""
    if not parts:
        raise InputError("concat_metrics: got no parts; pass at least one metrics dict")
    keys = list(parts[0])
    for i, part in enumerate(parts):
        if list(part) != keys:
            raise InputError(
                f"concat_metrics: part {i} has keys {sorted(part)}, expected {sorted(keys)}"
            )
    return {k: torch.cat([p[k].reshape(-1) for p in parts]) for k in keys}


def summarize(per_slice: Mapping[str, Tensor]) -> dict[str, float]:
    """Table row: mean, standard deviation and count of every metric, and empty-case counts.

    Args:
        per_slice: output of :func:`segmentation_metrics` (or :func:`concat_metrics`, or
            :func:`per_volume_metrics`).

    Returns:
        ``{metric}_mean``, ``{metric}_std`` (population, ``ddof=0``) and ``{metric}_n`` (values
        used: NaNs are left out) for every float entry; ``n`` (rows), ``both_empty``,
        ``pred_empty_only`` and ``target_empty_only`` when the flags are present. A metric
        with no defined value has mean and std NaN and ``_n`` 0: never a silent 0.
    """
    out: dict[str, float] = {}
    n = None
    for key, value in per_slice.items():
        if key in ("pred_empty", "target_empty", "group") or not value.is_floating_point():
            continue
        v = value.detach().reshape(-1).double().cpu()
        ok = v[~torch.isnan(v)]
        n = v.numel()
        out[f"{key}_mean"] = float(ok.mean()) if ok.numel() else float("nan")
        out[f"{key}_std"] = float(ok.std(correction=0)) if ok.numel() else float("nan")
        out[f"{key}_n"] = float(ok.numel())
    if "pred_empty" in per_slice and "target_empty" in per_slice:
        p = per_slice["pred_empty"].reshape(-1).bool().cpu()
        t = per_slice["target_empty"].reshape(-1).bool().cpu()
        n = p.numel()
        out["both_empty"] = float((p & t).sum())
        out["pred_empty_only"] = float((p & ~t).sum())
        out["target_empty_only"] = float((~p & t).sum())
    if n is not None:
        out["n"] = float(n)
    return out
