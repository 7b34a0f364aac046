"""TensorBoard tracking (train.tensorboard): events read back with TensorBoard's own reader."""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pytest
import torch

from ada_core.config import parse_config
from ada_core.errors import ConfigError
from ada_core.tracking import check_tracking, samples_grid
from studykit import ada_cli, metrics_rows, tiny_config, write_config


def test_asking_for_tensorboard_without_it_is_a_config_error_before_any_work(tmp_path, monkeypatch, capsys):
    from ada_core.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))  # fmt: skip
    config = tiny_config(tmp_path)
    config["train"]["tensorboard"] = True
    with pytest.raises(ConfigError, match=r"pip install 'ada-seg\[tensorboard\]'"):
        check_tracking(parse_config(config))
    path = write_config(config, tmp_path / "tb.toml")
    for command in (["config", "validate", str(path)], ["train", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "train.tensorboard = true, but the tensorboard package is not installed" in err
        assert "Traceback" not in err
    assert not (tmp_path / "tiny").exists()  # nothing started


def test_samples_grid_is_image_saliency_keep_ada_per_row():
    g = torch.Generator().manual_seed(0)
    samples = {"images": torch.rand(2, 1, 3, 4, generator=g), "saliency": torch.rand(2, 1, 3, 4, generator=g),
               "keep": torch.rand(2, 1, 3, 4, generator=g) > 0.5}  # fmt: skip
    samples["ada_images"] = samples["images"] * samples["keep"]
    grid = samples_grid(samples)
    assert grid.shape == (1, 6, 16) and grid.min() >= 0 and grid.max() <= 1
    for i in range(2):
        rows = grid[0, 3 * i : 3 * i + 3]
        np.testing.assert_array_equal(rows[:, 8:12].numpy(), samples["keep"][i, 0].float().numpy())
        sal = samples["saliency"][i, 0]
        want = (sal - sal.min()) / (sal.max() - sal.min())
        torch.testing.assert_close(rows[:, 4:8], want)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    pytest.importorskip("tensorboard", reason="tensorboard is optional (ada-seg[tensorboard])")
    out = tmp_path_factory.mktemp("tb")
    config = tiny_config(out, name="tb", attributors=[{"name": "gradcam"}], tensorboard=True)
    path = write_config(config, out / "tb.toml")
    proc = ada_cli("train", str(path), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "tb"


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("job", ["seed-0/standard", "seed-0/branches/gradcam"])
def test_scalars_are_the_epochs_of_metrics_jsonl(tracked, job):
    acc = _events(tracked / "tensorboard" / job)
    rows = metrics_rows(tracked / job)
    loss = acc.Scalars("loss/train")
    # a branch's steps continue its standard phase's (the standard phase has 2 epochs here)
    offset = 0 if job.endswith("standard") else len(metrics_rows(tracked / "seed-0/standard"))
    assert offset in (0, 2)
    assert [e.step for e in loss] == [offset + r["epoch"] for r in rows]
    np.testing.assert_allclose([e.value for e in loss], [r["loss"] for r in rows], rtol=1e-6)
    for metric in ("dsc_mean", "tpr_mean"):  # per-epoch validation has no surface distances
        got = [e.value for e in acc.Scalars(f"val/{metric}")]
        np.testing.assert_allclose(got, [r["metrics"][metric] for r in rows], rtol=1e-6)


def test_a_branch_continues_the_standard_phases_steps(tracked):
    # TensorBoard draws one job per run: a branch's curve must start where its standard
    # phase's ends (step standard_epochs + 1), not overlap it from step 1
    config = json.loads((tracked / "config.json").read_text())["train"]
    std = [e.step for e in _events(tracked / "tensorboard" / "seed-0" / "standard").Scalars("loss/train")]
    branch = [e.step for e in _events(tracked / "tensorboard" / "seed-0" / "branches" / "gradcam").Scalars("loss/train")]
    ada = config["cycles"] * config["ada_epochs"]
    assert std == list(range(1, config["standard_epochs"] + 1))
    assert branch == list(range(std[-1] + 1, std[-1] + 1 + ada))
    # event files are where docs/api.md says: <run>/tensorboard/seed-<N>/{standard,branches/<label>}/
    files = sorted(p.relative_to(tracked).parent.as_posix() for p in tracked.rglob("events.out.tfevents.*"))
    assert files == ["tensorboard/seed-0/branches/gradcam", "tensorboard/seed-0/standard"]


def test_a_train_without_a_control_says_so_as_a_plan(tracked):
    # this study plans gradcam alone: its verdict says no control was planned, not that none
    # finished (which would read as a failure)
    verdict = json.loads((tracked / "summary.json").read_text())["verdict"]
    said = " ".join([*verdict["opening"], *verdict["caveats"]])
    assert "plans no control branch" in said and "finished" not in said
    assert "No comparison matrix: the study plans no control branch" in (tracked / "report.html").read_text()


def test_the_samples_figure_is_logged_at_the_branchs_end(tracked):
    from PIL import Image

    from studykit import load_pt as load_checkpoint

    acc = _events(tracked / "tensorboard" / "seed-0" / "branches" / "gradcam")
    (event,) = acc.Images("samples")
    picture = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("L"))
    samples = load_checkpoint(tracked / "seed-0" / "branches" / "gradcam" / "samples.pt")
    n, _, h, w = samples["images"].shape
    assert picture.shape == (n * h, 4 * w)
    keep = samples["keep"][:, 0].numpy().reshape(n * h, w)
    np.testing.assert_array_equal(picture[:, 2 * w : 3 * w], keep.astype(np.uint8) * 255)
    assert "samples" not in _events(tracked / "tensorboard" / "seed-0" / "standard").Tags()["images"]
    assert json.loads((tracked / "config.json").read_text())["train"]["tensorboard"] is True
