"""Plain joint training: no modulation (coef 1). The aux heads still run, detached, for the probe."""

from __future__ import annotations

from .base import Method


class Joint(Method):
    name = "joint"
    help = "plain joint training of all modalities (no balancing)"
