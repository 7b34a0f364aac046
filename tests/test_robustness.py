"""The Algorithm 2 robustness set against a direct double loop."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from ada_core.errors import InputError
from ada_core.robustness import OcclusionBatch, iter_occlusions, num_occlusions, occlusion_grid

SHAPES = [(12, 12, 4), (10, 7, 3), (7, 10, 4), (5, 5, 8), (9, 11, 1)]


def reference(images: np.ndarray, size: int):
    """A direct double loop over range(0, H, Z) x range(0, W, Z); numpy slicing clips."""
    out, index, pos = [], [], []
    n, _, h, w = images.shape
    for k in range(n):
        for i in range(0, h, size):
            for j in range(0, w, size):
                img = images[k].copy()
                img[:, i : i + size, j : j + size] = 0
                out.append(img)
                index.append(k)
                pos.append((i, j))
    return np.stack(out), np.array(index), np.array(pos)


@pytest.mark.parametrize("h,w,z", SHAPES)
def test_grid_matches_double_loop(h, w, z):
    expected = [(i, j) for i in range(0, h, z) for j in range(0, w, z)]
    grid = occlusion_grid(h, w, z)
    assert grid.dtype == torch.long and grid.shape == (len(expected), 2)
    assert [tuple(p) for p in grid.tolist()] == expected
    assert num_occlusions(3, h, w, z) == 3 * len(expected)


@pytest.mark.parametrize("h,w,z", SHAPES)
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_occlusions_match_double_loop(h, w, z, batch_size):
    gen = torch.Generator().manual_seed(h * w + z)
    images = torch.rand(3, 1, h, w, generator=gen) + 0.5  # no zeros: occlusion is visible
    masks = (torch.rand(3, 1, h, w, generator=gen) > 0.5).float()
    batches = list(iter_occlusions(images, masks, z, batch_size))
    ref_img, ref_idx, ref_pos = reference(images.numpy(), z)
    assert all(isinstance(b, OcclusionBatch) for b in batches)
    assert all(b.images.shape[0] <= batch_size for b in batches)
    assert len(batches) == -(-len(ref_img) // batch_size)
    got_img = torch.cat([b.images for b in batches]).numpy()
    np.testing.assert_array_equal(got_img, ref_img)
    np.testing.assert_array_equal(torch.cat([b.image_index for b in batches]).numpy(), ref_idx)
    np.testing.assert_array_equal(torch.cat([b.position for b in batches]).numpy(), ref_pos)
    got_masks = torch.cat([b.masks for b in batches])
    assert torch.equal(got_masks, masks[torch.as_tensor(ref_idx)])  # masks are never occluded
    assert batches[0].image_index.dtype == torch.long and batches[0].position.dtype == torch.long


def test_every_pixel_occluded_exactly_once_per_image():
    images = torch.ones(1, 1, 13, 17)
    zeros = sum((b.images == 0).float().sum(0) for b in iter_occlusions(images, images, 5, 4))
    assert torch.equal(zeros, torch.ones(1, 13, 17))


def test_generated_lazily_with_fill():
    images = torch.rand(2, 1, 6, 6) + 1
    it = iter_occlusions(images, torch.zeros_like(images), 3, 2, fill=-1.0)
    assert inspect.isgenerator(it)
    first = next(it)
    assert first.images.shape == (2, 1, 6, 6)
    assert torch.equal(first.images[0, 0, :3, :3], torch.full((3, 3), -1.0))
    assert torch.equal(first.images[0, 0, 3:, :], images[0, 0, 3:, :])


def test_bad_input_errors():
    with pytest.raises(InputError, match=r"size must be an integer >= 1, got 0"):
        occlusion_grid(10, 10, 0)
    with pytest.raises(InputError, match=r"height must be an integer >= 1"):
        occlusion_grid(0, 10, 3)
    with pytest.raises(InputError, match=r"images must be a \(N, 1, H, W\) tensor, got \(4, 4\)"):
        iter_occlusions(torch.zeros(4, 4), torch.zeros(4, 4), 2, 2)
    with pytest.raises(
        InputError, match=r"masks must have the images' shape \(1, 1, 4, 4\), got \(1, 1, 4, 5\)"
    ):
        iter_occlusions(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), 2, 2)
    with pytest.raises(InputError, match=r"batch_size must be an integer >= 1, got 0"):
        iter_occlusions(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), 2, 0)
