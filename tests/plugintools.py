"""Installing plugins for tests the way users do, without touching the venv.

`pip_install(src, target)` runs pip on a copy of a plugin's source folder (the build writes
`*.egg-info` and `build/` next to the sources, which must not land in the repository) with
`--no-deps --no-build-isolation --no-index --target`: the venv's own setuptools builds the wheel,
nothing is downloaded, and the result (the package and its `.dist-info` with `entry_points.txt`)
lies in `target` only. Processes see it through PYTHONPATH (`plugin_env`), exactly as entry
points of an installed distribution: importlib.metadata reads every `.dist-info` on sys.path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cggm-plugin-example"


def pip_install(src: Path, target: Path, workdir: Path) -> Path:
    """Install the plugin at `src` into the folder `target` (a site directory of its own)."""
    copy = workdir / f"src-{src.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--target", str(target), str(copy),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"pip could not install {src}:\n{r.stdout}\n{r.stderr}")
    return target


def write_plugin_source(
    root: Path, package: str, modules: Mapping[str, str], entry_points: Mapping[str, Mapping[str, str]]
) -> Path:
    """A plugin's source folder: pyproject.toml declaring `entry_points` (group → name → value) and
    the modules of the import package `package` (module name → source)."""
    root.mkdir(parents=True, exist_ok=True)
    dist = package.replace("_", "-")
    groups = "\n".join(
        f'[project.entry-points."{group}"]\n' + "\n".join(f'{name} = "{value}"' for name, value in eps.items()) + "\n"
        for group, eps in entry_points.items()
    )
    (root / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{dist}"\nversion = "0.0.1"\n\n{groups}\n'
        f'[tool.setuptools]\npackages = ["{package}"]\n'
    )
    (root / package).mkdir(exist_ok=True)
    (root / package / "__init__.py").write_text("")
    for name, source in modules.items():
        (root / package / f"{name}.py").write_text(textwrap.dedent(source))
    return root


def plugin_env(*sites: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that has these plugin folders installed (and the repository)."""
    env = {k: v for k, v in os.environ.items() if k != "CGGM_NO_PLUGINS"}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    env["PYTHONPATH"] = os.pathsep.join([*(str(s) for s in sites), str(REPO)])
    return env
