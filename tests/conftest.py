from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # Measured on 2 cores: one thread is as fast and does not collapse when the other core is busy.
    torch.set_num_threads(1)
