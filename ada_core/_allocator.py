"""Keep freed tensor memory in the process instead of handing it back to the kernel.

torch's CPU allocator is plain ``malloc``. glibc serves a block above its mmap threshold
(128 KiB at start, raised dynamically up to 32 MiB as blocks are freed) with a fresh ``mmap``
and unmaps it on ``free``; it also trims the heap's free top above 128 KiB. A training step
allocates and frees the same few-MiB activations every iteration, so each one comes back as
new pages that the kernel must fault in and zero: on the demo a quarter of an epoch's wall
time. Fixing the mmap threshold at its ceiling (32 MiB) and the trim threshold at 256 MiB makes
those blocks heap blocks that are reused. Both are needed: a fixed mmap threshold alone lets
the freed heap top be trimmed and faulted in again, which is slower than glibc's default.

The cost is memory: up to 256 MiB of freed heap stays mapped to the process. Results are
unchanged (the allocator decides where bytes live, not what is computed; the suite checks the
weights bit for bit). ``ADA_MALLOC=default`` leaves glibc as it is; so does any sign that the
user chose an allocator or its settings (``LD_PRELOAD``, ``MALLOC_*_`` variables,
``glibc.malloc`` tunables), and any C library other than glibc. docs/performance.md has the
figures.
"""

from __future__ import annotations

import ctypes
import logging
import os

from ada_core.errors import ConfigError

log = logging.getLogger(__name__)

# glibc's malloc.h: the mallopt parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 256 * 1024 * 1024

_USER_CHOSEN = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX")  # fmt: skip

_state: str | None = None  # what keep_freed_memory decided, once per process


def _left_alone_because() -> str | None:
    choice = os.environ.get("ADA_MALLOC", "tuned").strip().lower()
    if choice not in ("tuned", "default"):
        raise ConfigError(
            f"environment variable ADA_MALLOC={os.environ['ADA_MALLOC']!r}: expected 'tuned' "
            "(keep freed tensor memory in the process, the default) or 'default' (glibc's own "
            "thresholds); unset it or set one of the two"
        )
    if choice == "default":
        return "ADA_MALLOC=default"
    if os.environ.get("LD_PRELOAD"):
        return "LD_PRELOAD is set (another allocator may be in use)"
    chosen = [name for name in _USER_CHOSEN if name in os.environ]
    if chosen:
        return f"{chosen[0]} is set"
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):  # not a glibc platform (macOS, Windows, musl)
        libc_version = None
    if not libc_version or not libc_version.startswith("glibc"):
        return "the C library is not glibc"
    return None


def check_choice() -> None:
    """Check ``ADA_MALLOC`` as a run would, without changing anything.

    Raises:
        ConfigError: ``ADA_MALLOC`` is set to something other than ``tuned`` or ``default``.
    """
    _left_alone_because()


def keep_freed_memory() -> str:
    """Fix glibc's mmap and trim thresholds for this process (once); say what was done.

    Returns:
        ``"tuned"``, or ``"left alone: <reason>"``.

    Raises:
        ConfigError: ``ADA_MALLOC`` is set to something other than ``tuned`` or ``default``.
    """
    global _state
    if _state is not None:
        return _state
    reason = _left_alone_because()
    if reason is None:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        # The trim threshold first: a fixed mmap threshold without it is slower than neither.
        ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(
            _M_MMAP_THRESHOLD, MMAP_THRESHOLD
        )
        reason = None if ok else "glibc refused the thresholds"
    _state = "tuned" if reason is None else f"left alone: {reason}"
    log.debug("malloc thresholds: %s", _state)
    return _state
