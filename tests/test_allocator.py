"""The malloc thresholds (ada_core/_allocator.py): glibc really serves a large block
from the heap, training is bit-identical either way, and a user's own choice is
left alone. Each case runs in a fresh interpreter: the settings are per process and once."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from ada_core import _allocator
from ada_core.errors import ConfigError

GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's (not this libc)")

# glibc >= 2.33: mallinfo2().hblks counts the blocks malloc is serving with their own mmap.
MMAPPED_BLOCKS = """
import ctypes, json, sys
from ada_core._allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
state = keep_freed_memory()
before = libc.mallinfo2().hblks
# 31 MiB: below the fixed 32 MiB threshold, above any glibc raises its own to by itself
# unless a block at least this large was freed before (the dynamic threshold follows frees)
block = libc.malloc(31 * 1024 * 1024)
during = libc.mallinfo2().hblks
libc.free(block)
print(json.dumps({"state": state, "mmapped": during - before}))
"""

# A few Adam steps of a small conv net whose activations are MiB-sized; the weights' digest.
TRAIN = """
import hashlib, json, torch
from ada_core._allocator import keep_freed_memory

state = keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                          torch.nn.ReLU(), torch.nn.Conv2d(16, 1, 3, padding=1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for _ in range(4):
    x = torch.randn(8, 1, 96, 96)
    loss = (net(x) - x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters()))
print(json.dumps({"state": state, "sha256": digest.hexdigest()}))
"""


def _run(script: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ADA_MALLOC", "LD_PRELOAD", "GLIBC_TUNABLES")
             and not k.startswith("MALLOC_")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_a_31_mib_block_comes_from_the_heap_once_tuned_and_from_mmap_by_default():
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018
    except AttributeError:
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    tuned = _run(MMAPPED_BLOCKS)
    default = _run(MMAPPED_BLOCKS, ADA_MALLOC="default")
    assert tuned == {"state": "tuned", "mmapped": 0}
    assert default == {"state": "left alone: ADA_MALLOC=default", "mmapped": 1}


@needs_glibc
def test_training_is_bit_identical_with_and_without_the_thresholds():
    tuned = _run(TRAIN)
    default = _run(TRAIN, ADA_MALLOC="default")
    assert (tuned["state"], default["state"]) == ("tuned", "left alone: ADA_MALLOC=default")
    assert tuned["sha256"] == default["sha256"]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"ADA_MALLOC": "default"}, "ADA_MALLOC=default"),
        ({"ADA_MALLOC": " Default "}, "ADA_MALLOC=default"),
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "LD_PRELOAD is set"),
        ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX is set"),
        ({"MALLOC_TRIM_THRESHOLD_": "0"}, "MALLOC_TRIM_THRESHOLD_ is set"),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "GLIBC_TUNABLES sets glibc.malloc"),
    ],
)
def test_a_choice_the_user_made_is_left_alone(monkeypatch, env, reason):
    for key in ("ADA_MALLOC", "LD_PRELOAD", "GLIBC_TUNABLES", *_allocator._USER_CHOSEN):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(_allocator, "_state", None)
    state = _allocator.keep_freed_memory()
    assert state.startswith("left alone: ") and reason in state
    assert _allocator.keep_freed_memory() is state  # decided once per process


def test_a_bad_ada_malloc_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("ADA_MALLOC", "jemalloc")
    monkeypatch.setattr(_allocator, "_state", None)
    with pytest.raises(ConfigError, match=r"ADA_MALLOC='jemalloc'.*'tuned'.*'default'"):
        _allocator.keep_freed_memory()
    with pytest.raises(ConfigError, match="ADA_MALLOC"):
        _allocator.check_choice()
    assert _allocator._state is None  # nothing was decided


def _ada_with_bad_malloc(*args: str) -> subprocess.CompletedProcess:
    """``ada ARGS`` with ``ADA_MALLOC=fast``; it must exit 2 naming the variable, no traceback."""
    out = subprocess.run([sys.executable, "-m", "ada_core.cli", *args],
                         env={**os.environ, "ADA_MALLOC": "fast"}, capture_output=True,
                         text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "ADA_MALLOC='fast'" in out.stderr and "Traceback" not in out.stderr
    return out


def test_config_validate_refuses_a_bad_ada_malloc_with_exit_2(tmp_path):
    _ada_with_bad_malloc("config", "validate", "configs/demo.toml", "--set", f"output={tmp_path}")


def test_compare_refuses_a_bad_ada_malloc_before_it_creates_anything(tmp_path):
    _ada_with_bad_malloc("compare", "configs/demo.toml", "--quiet", "--set",
                         f"output={tmp_path / 'runs'}")  # fmt: skip
    assert not (tmp_path / "runs").exists()  # not even the log folder
