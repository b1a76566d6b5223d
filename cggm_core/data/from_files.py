"""What the paper's data sets share as catalog datasets: paths under the data root, splits from readers.

A file-backed dataset names its files with settings relative to the worker's data root
(`$CGGM_DATA_DIR`, default `./data/datasets`; cggm_core.data.files.root). Two checks, two places:

* at POST (`check`, called by `config.resolve` on the backend): the lexical rule — a relative
  path whose `..` never climb above the root. The backend does not look at the files: it usually
  runs on another machine than the workers (docker-compose gives it no data volume), so a file
  missing on its disk says nothing about a worker's.
* at load (`resolve_path`, on the worker): the rule again on the worker's own disk, where a
  symlink can also lead out of the root; then the reader, whose `DataFormatError` names the file
  and what is wrong (a missing file: the expected layout). Raised in `Trainer.setup` (or, for a
  file first read mid-run, in the epoch), it fails the run with that line as the reason.

The readers (cggm_core.data.files) give `SampleSource`s; here they become the trainer's splits:
in memory when small (`memory_split`), through the DataLoader otherwise (`LoaderSplit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch
else:
    from .._lazy import torch

from ..settings import Setting, SettingError
from .base import Dataset, Split
from .files import ArraySplit, DataPathError, SampleSource, check_relative_path, data_root, resolve_under_root


def path_setting(default: str, what: str, name: str = "path") -> Setting:
    """A path relative to the worker's data root; `what` says which file or folder it names."""
    return Setting(
        name,
        "str",
        default,
        f"{what}, relative to the worker's data root $CGGM_DATA_DIR",
        pattern_help="a path relative to the data root",
    )


class FileBacked(Dataset):
    """A dataset read from the user's files under the data root.

    `path_settings` names the settings that hold paths relative to the root (`path` first); an
    empty value is allowed for the optional ones (all but `path`).
    """

    path_settings: ClassVar[tuple[str, ...]] = ("path",)

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        for name in cls.path_settings:
            value = cfg[name]
            if name != "path" and not value:
                continue
            try:
                check_relative_path(value)
            except DataPathError as e:
                raise SettingError(f"setting '{name}': {e}") from None

    @classmethod
    def resolve_path(cls, cfg: Mapping[str, Any], name: str = "path") -> Path:
        """The setting's path on this machine: under `$CGGM_DATA_DIR`, symlinks followed (DataPathError)."""
        return resolve_under_root(cfg[name], data_root())


def memory_split(source: SampleSource, regression: bool) -> Split:
    """An in-memory split from a reader's arrays; regression targets become (N, 1) float32."""
    assert isinstance(source, ArraySplit), f"{type(source).__name__} is read per sample, not held as arrays"
    xs, y = source.arrays()
    target = (
        torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(-1, 1))
        if regression
        else torch.from_numpy(np.asarray(y, dtype=np.int64))
    )
    return Split({m: torch.from_numpy(np.ascontiguousarray(x)) for m, x in xs.items()}, target)
