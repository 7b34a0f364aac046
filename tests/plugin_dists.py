"""Tiny plugin distributions, good and broken, installed by pip into a folder for the tests.

Each distribution is written as a wheel (PEP 427: the package files plus a ``.dist-info`` with
METADATA, WHEEL, entry_points.txt and RECORD) and installed by one real ``pip install --target``
call, so ``importlib.metadata`` finds them the way it finds any user's pip-installed plugin.
Wheels rather than source trees: a setuptools build costs about 0.7 s per package here, pip
installing a wheel almost nothing, and what the tests exercise is discovery, not building.

:func:`load_in_subprocess` then runs :func:`ada_core.plugins.load_plugins` in a fresh
interpreter with that folder on ``PYTHONPATH``, once per scenario, and returns what happened.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# A valid attributor class, built under any registry name (every package gets its own copy).
COMPONENT = '''
import torch
from ada_core import Attributor, ComponentConfig


class _Config(ComponentConfig):
    pass


def make(component_name):
    class Edges(Attributor):
        name = component_name
        Config = _Config

        def _attribute(self, model, images, masks):
            return images.diff(dim=-1, prepend=images[..., :1]).abs()

    Edges.__qualname__ = f"Edges[{component_name}]"
    return Edges
'''


def _registers(*names: str, then: str = "") -> str:
    adds = "".join(f"    registry.attributors.add(make({n!r}))\n" for n in names)
    return (
        "from ada_core import hookimpl\n"
        "from ._component import make\n\n\n"
        f"@hookimpl\ndef ada_register(registry):\n{adds}{then}"
    )


@dataclass(frozen=True)
class Dist:
    """One distribution: its name, version, ``ada`` entry points and package files."""

    name: str
    version: str
    entry_points: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)


DISTS = [
    Dist(
        "ada-good",
        "2.0.1",
        {"good": "ada_good.plugin"},
        {"ada_good/plugin.py": _registers("good_edges")},
    ),
    # One distribution, one entry point per way of getting the hook wrong.
    Dist(
        "ada-hooks",
        "0.3.0",
        {
            "typo": "ada_hooks.typo",
            "nohook": "ada_hooks.nohook",
            "undecorated": "ada_hooks.undecorated",
            "badargs": "ada_hooks.badargs",
            "core": "ada_hooks.impostor",
            "alias_a": "ada_hooks.shared",
            "alias_b": "ada_hooks.shared",
            "halfway": "ada_hooks.halfway",
            "nothing": "ada_hooks.nohook:NOTHING",
        },
        {
            "ada_hooks/typo.py": (
                "from ada_core import hookimpl\n\n\n@hookimpl\ndef ada_registr(registry):\n"
                "    raise AssertionError('an unknown hook must never be called')\n"
            ),
            "ada_hooks/nohook.py": '"""A plugin module that forgot its hook."""\nNOTHING = None\n',
            "ada_hooks/undecorated.py": "def ada_register(registry):\n    pass\n",
            "ada_hooks/badargs.py": (
                "from ada_core import hookimpl\n\n\n@hookimpl\ndef ada_register(reg):\n    pass\n"
            ),
            "ada_hooks/impostor.py": _registers("impostor"),
            "ada_hooks/shared.py": _registers("shared_edges"),
            "ada_hooks/halfway.py": _registers(
                "halfway_edges", then="    raise RuntimeError('halfway boom')\n"
            ),
        },
    ),
    # Two distributions that both call their plugin "twin".
    Dist(
        "ada-twin-one",
        "1.0.0",
        {"twin": "ada_twin_one.plugin"},
        {"ada_twin_one/plugin.py": _registers("twin_one")},
    ),
    Dist(
        "ada-twin-two",
        "2.0.0",
        {"twin": "ada_twin_two.plugin"},
        {"ada_twin_two/plugin.py": _registers("twin_two")},
    ),
]


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(dist: Dist, folder: Path) -> Path:
    """Write ``dist`` as a pure-Python wheel in ``folder`` and return its path."""
    stem = f"{dist.name.replace('-', '_')}-{dist.version}"
    info = f"{stem}.dist-info"
    packages = {path.split("/")[0] for path in dist.files}
    files = {f"{p}/__init__.py": "" for p in packages}
    files |= {f"{p}/_component.py": COMPONENT for p in packages}
    files |= dist.files
    eps = "".join(f"{name} = {value}\n" for name, value in dist.entry_points.items())
    files |= {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: ada-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[ada]\n{eps}",
    }
    record = [_record_line(p, t.encode()) for p, t in files.items()] + [f"{info}/RECORD,,"]
    wheel = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def pip_install(dists: list[Dist], workdir: Path) -> Path:
    """Build the wheels and ``pip install --target`` them in one call; return the target."""
    wheels = workdir / "wheels"
    wheels.mkdir()
    site = workdir / "site"
    paths = [str(build_wheel(d, wheels)) for d in dists]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(site), *paths],
        check=True,
    )
    return site


# Runs in the child: every scenario keeps only the plugins it names, through ADA_DISABLE_PLUGINS
# (which also keeps the first-party plugins, and their imports of torch add-ons, out).
DRIVER = textwrap.dedent('''
    import json, os, sys, warnings
    from importlib import metadata
    from ada_core.plugins import load_plugins

    installed = {ep.name for ep in metadata.entry_points(group="ada")}
    results = {}
    for sc in json.load(sys.stdin):
        off = sorted(installed - set(sc["keep"])) + sc["also_disable"]
        os.environ["ADA_DISABLE_PLUGINS"] = ",".join(off)
        out = {"error": None, "components": [], "broken": [], "warnings": []}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                registry = load_plugins(skip_broken=sc["skip_broken"])
            except Exception as e:
                cause = type(e.__cause__).__name__ if e.__cause__ is not None else None
                out["error"] = {"type": type(e).__name__, "message": str(e), "cause": cause}
            else:
                out["components"] = [
                    [kind, en.cls.name, en.plugin.name, en.plugin.distribution, en.plugin.version]
                    for kind, section in registry.sections.items() for en in section
                ]
                out["broken"] = [[i.name, i.distribution, m] for i, m in registry.broken]
        out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
        results[sc["id"]] = out
    print(json.dumps(results))
''')


@dataclass(frozen=True)
class Scenario:
    """Load the plugins in ``keep`` (all others disabled), optionally with ``skip_broken``."""

    id: str
    keep: tuple[str, ...]
    skip_broken: bool = False
    also_disable: tuple[str, ...] = ()


def load_in_subprocess(site: Path, scenarios: list[Scenario]) -> dict[str, dict]:
    """Run every scenario in one fresh interpreter with ``site`` on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    payload = [
        {"id": s.id, "keep": list(s.keep), "skip_broken": s.skip_broken,
         "also_disable": list(s.also_disable)}
        for s in scenarios
    ]
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER], input=json.dumps(payload), env=env,
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"plugin-loading subprocess failed:\n{proc.stderr}")
    return json.loads(proc.stdout)
