"""The backend needs cggm_core's registries, not torch: importing and validating must not load it.

torch is ~250 MB of the backend's memory and ~1.5 s of its start-up (BENCHMARKS.md §3).
"""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO

PROBE = """
import sys
import backend.app
from cggm_core.config import catalog, resolve
catalog()
resolve({"dataset": "mfeat", "method": "ogm_ge", "views": "kar,mor", "epochs": 3})
resolve({"dataset": "synthetic", "method": "cggm", "variant": "stable"})
resolve({"dataset": "synthetic_seg", "method": "cggm", "segnet_width": 8})
print("torch" in sys.modules)
"""


def test_backend_and_job_validation_do_not_import_torch() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_training_still_gets_the_real_torch() -> None:
    code = (
        "import cggm_core, torch; from cggm_core.tasks import classification; "
        "t = classification(3); print(float(t.metric(torch.eye(3), torch.arange(3))))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.0"
