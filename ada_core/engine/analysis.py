"""First-cycle attribution shared by all branches, the erased-region IoU and sample figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ada_core.attribution import attribute_all
from ada_core.config import ComponentSpec
from ada_core.engine.checkpoint import write_json
from ada_core.engine.phases import Session
from ada_core.interfaces import Attributor, SegModel
from ada_core.masks import erased_iou_matrix

__all__ = ["FirstCycle", "first_cycle_keeps", "save_iou", "save_samples"]


@dataclass
class FirstCycle:
    """Keep masks of every attributor for the standard phase's final model.

    Attributes:
        keeps: label -> ``(N, 1, H, W)`` float32 keep masks over the training images.
        counters: label -> events of the attributor and the mask builder.
        attributors: label -> the attributor instances (a branch keeps using its own, so that
            stateful ones such as ``random`` continue their sequence).
        saliency: label -> ``(S, 1, H, W)`` saliency of the first ``S`` images (figures).
    """

    keeps: dict[str, Tensor]
    counters: dict[str, Counter[str]]
    saliency: dict[str, Tensor]
    attributors: dict[str, Attributor]


def first_cycle_keeps(
    s: Session, specs: Sequence[ComponentSpec], model: SegModel, samples: int = 4
) -> FirstCycle:
    """Attribute every training image once for all branches at the branch-start weights.

    Every branch starts from the same weights, so its first-cycle saliency is the same as
    computed here; methods that share passes (``attribute_all``) share them. The global RNG is
    restored afterwards, so training is unaffected.
    """
    specs = [sp for sp in specs if sp.name != "none"]
    attributors = {
        sp.key: s.registry.build("attributor", sp, f"attributors[{sp.key}].params") for sp in specs
    }
    builder = s.registry.build("mask", s.config.mask, "mask.params")
    keeps: dict[str, list[Tensor]] = {k: [] for k in attributors}
    counters: dict[str, Counter[str]] = {k: Counter() for k in attributors}
    saliency: dict[str, Tensor] = {}
    if not attributors:
        return FirstCycle({}, counters, {}, {})
    rng = torch.get_rng_state()
    cuda_rng = (
        torch.cuda.get_rng_state(s.runtime.device) if s.runtime.device.type == "cuda" else None
    )
    bs = s.config.train.eval_batch_size
    data = s.train
    for start in range(0, len(data), bs):
        x, y = data.images[start : start + bs], data.masks[start : start + bs]
        sal = attribute_all(attributors, model, x, y)
        for k in attributors:
            keeps[k].append(builder.build(sal[k], y))
            counters[k].update(builder.counters)
            builder.counters.clear()
            if start == 0:
                saliency[k] = sal[k][:samples].cpu()
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, s.runtime.device)
    for k, a in attributors.items():
        counters[k].update(a.counters)
        a.counters.clear()
    return FirstCycle({k: torch.cat(v) for k, v in keeps.items()}, counters, saliency, attributors)


def save_iou(keeps: dict[str, Tensor], path: Path) -> dict[str, object]:
    """Mean pairwise IoU of the first-cycle erased regions -> ``path`` (JSON); returns it."""
    if len(keeps) == 0:
        result: dict[str, object] = {"names": [], "matrix": []}
    else:
        names, matrix = erased_iou_matrix({k: v.float() for k, v in keeps.items()})
        result = {"names": names, "matrix": matrix.cpu().tolist()}
    write_json(path, result)
    return result


def save_samples(images: Tensor, masks: Tensor, first: FirstCycle, path: Path) -> Path | None:
    """Figure: each sample image with its ground truth, then per attributor its first-cycle
    saliency with the erased region outlined; returns None when there is nothing to show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(first.saliency)
    n = (
        min(int(images.shape[0]), *(int(v.shape[0]) for v in first.saliency.values()))
        if labels
        else 0
    )
    if n == 0:
        return None
    cols = 1 + len(labels)
    fig, axes = plt.subplots(n, cols, figsize=(2.0 * cols, 2.0 * n), squeeze=False)
    for i in range(n):
        img = images[i, 0].float().cpu().numpy()
        gt = masks[i, 0].float().cpu().numpy()
        axes[i, 0].imshow(img, cmap="gray")
        axes[i, 0].contour(gt, levels=[0.5], colors="lime", linewidths=0.7)
        axes[i, 0].set_title("image + GT" if i == 0 else "", fontsize=8)
        for j, label in enumerate(labels, start=1):
            sal = first.saliency[label][i, 0].numpy()
            erased = (first.keeps[label][i, 0] == 0).float().cpu().numpy()
            axes[i, j].imshow(img, cmap="gray")
            axes[i, j].imshow(sal, cmap="inferno", alpha=0.6)
            if erased.any():
                axes[i, j].contour(erased, levels=[0.5], colors="cyan", linewidths=0.8)
            axes[i, j].set_title(label if i == 0 else "", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
