"""Figure 3: first-cycle saliency and the ADA image actually trained on, per method."""

from __future__ import annotations

import numpy as np

from ada_core.report._figure import ReportFigure, new_figure
from ada_core.runfolder import RunFolder

__all__ = ["sample_figures"]

_GT = "#ffd700"
_ERASED = "#00e5ff"


def _replicate(run: RunFolder) -> tuple[tuple[str, int], dict[str, dict]] | None:
    """The (fold, seed) whose ADA branches saved the most samples, and those samples."""
    ada = [b.label for b in run.summary.branches if b.kind == "ada"]
    best: tuple[tuple[str, int], dict[str, dict]] | None = None
    for fold, seed in sorted({(j.fold, j.seed) for j in run.done()}):
        found = {}
        for job in run.done():
            if (job.fold, job.seed) == (fold, seed) and job.label in ada:
                s = run.samples(job)
                if s is not None:
                    found[job.label] = s
        if found and (best is None or len(found) > len(best[1])):
            best = ((fold, seed), found)
        if best is not None and len(best[1]) == len(ada):
            break
    return best


def _outline(ax, mask: np.ndarray, color: str, style: str = "-") -> None:
    if mask.min() != mask.max():
        ax.contour(mask, levels=[0.5], colors=[color], linewidths=1.0, linestyles=style)


def sample_figures(run: RunFolder, n_images: int = 2) -> list[ReportFigure]:
    """One figure per training image (up to ``n_images``); empty when no branch saved samples."""
    found = _replicate(run)
    if found is None:
        return []
    (fold, seed), samples = found
    labels = [b.label for b in run.summary.branches if b.label in samples]
    first = samples[labels[0]]
    n = min(n_images, first["images"].shape[0], *(s["images"].shape[0] for s in samples.values()))
    where = f"{fold + ', ' if fold else ''}seed {seed}"
    out = []
    for i in range(n):
        fig = new_figure(7.4, 0.4 + 2.1 * len(labels))
        axes = fig.subplots(len(labels), 3, squeeze=False)
        for r, label in enumerate(labels):
            s = samples[label]
            image, mask, sal = s["images"][i], s["masks"][i], s["saliency"][i]
            keep, ada = s["keep"][i], s["ada_images"][i]
            lo = float(min(image.min(), ada.min()))
            hi = float(max(image.max(), ada.max()))
            a0, a1, a2 = axes[r]
            a0.imshow(image, cmap="gray", vmin=lo, vmax=hi)
            _outline(a0, mask, _GT)
            im = a1.imshow(sal, cmap="inferno")
            _outline(a1, mask, _GT)
            fig.colorbar(im, ax=a1, shrink=0.85, label=f"{label} saliency")
            a2.imshow(ada, cmap="gray", vmin=lo, vmax=hi)
            _outline(a2, mask, _GT)
            _outline(a2, 1.0 - keep, _ERASED, "--")
            for ax in (a0, a1, a2):
                ax.set_xlabel("x (px)", fontsize=8)
                ax.set_ylabel("y (px)", fontsize=8)
                ax.tick_params(labelsize=7)
            a0.set_ylabel(f"{label}\ny (px)", fontsize=9)
        axes[0][0].set_title("training image", fontsize=9)
        axes[0][1].set_title("saliency (first cycle)", fontsize=9)
        axes[0][2].set_title("ADA image trained on", fontsize=9)
        caption = (
            f"Training image {i + 1} of {where}, at the first ADA cycle; one row per method "
            f"({', '.join(labels)}). Yellow outline: ground-truth grey matter. Middle: the "
            f"method's saliency (its own colour scale). Right: the image the model was trained "
            f"on, with the erased region (dashed cyan) filled with {first['fill']:g}."
        )
        missing = [b.label for b in run.summary.branches
                   if b.kind == "ada" and b.label not in samples]  # fmt: skip
        if missing:
            caption += f" No samples for {', '.join(missing)} in this replicate."
        out.append(ReportFigure(f"samples-{i + 1}", f"Figure 3{'abcdefgh'[i]}: samples, training "
                                f"image {i + 1}", caption, fig))  # fmt: skip
    return out
