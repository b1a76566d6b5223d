"""Print the requirements of the project (and the given extras) from pyproject.toml alone.

Used by the Dockerfiles to install every dependency in a layer of its own, before the source is
copied, so that editing the source does not reinstall them:

    python deps.py server > requirements.txt && pip install -r requirements.txt

Only the standard library: it runs before anything is installed.
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
lines = list(project["dependencies"])
for extra in sys.argv[1:]:
    lines += project["optional-dependencies"][extra]
print("\n".join(dict.fromkeys(lines)))
