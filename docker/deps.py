"""Print the requirements of the project (and the given extras) from pyproject.toml alone.

Used by the Dockerfiles to install every dependency in a layer of its own, before the source is
copied, so that editing the source does not reinstall them:

    python deps.py server > requirements.txt && pip install -r requirements.txt

Extras may be given as separate arguments or comma-separated in one (`data,hf`: what a build
argument holds). Only the standard library: it runs before anything is installed.
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
lines = list(project["dependencies"])
extras = project["optional-dependencies"]
for extra in (e.strip() for arg in sys.argv[1:] for e in arg.split(",") if e.strip()):
    if extra not in extras:
        sys.exit(f"deps.py: unknown extra {extra!r}; pyproject.toml has: {', '.join(sorted(extras))}")
    lines += extras[extra]
print("\n".join(dict.fromkeys(lines)))
