"""The data root: file-backed data sets read only under it (DESIGN §11, issue 11 §2).

A dataset's `path` setting is relative to the worker's `$CGGM_DATA_DIR` (default
`./data/datasets`). The backend checks the rule lexically at POST (`check_relative_path`: it may
not have the files); the worker checks it again on its own disk (`resolve_under_root`), where a
symlink can also lead out of the root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

DATA_DIR_ENV = "CGGM_DATA_DIR"
DEFAULT_DATA_DIR = Path("data") / "datasets"


class DataPathError(ValueError):
    """A dataset path breaks the data-root rule; the message names the path, the root and the rule."""


def data_root(environ: Mapping[str, str] | None = None) -> Path:
    """`$CGGM_DATA_DIR`, or `./data/datasets` under the current directory, as an absolute path."""
    env = os.environ if environ is None else environ
    return Path(env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).absolute()


def check_relative_path(path: str, root: str | os.PathLike[str] | None = None) -> PurePosixPath:
    """The lexical rule: a non-empty relative path whose `..` never climb above the root.

    Needs no file system (the backend calls it at POST). Returns the normalised relative path
    (`a/./b/../c` → `a/c`). `root` only feeds the error message.
    """
    where = f"the data root ({root})" if root is not None else f"the data root (${DATA_DIR_ENV})"
    if not isinstance(path, str) or not path.strip():
        raise DataPathError(f"dataset path {path!r} is empty: give a path relative to {where}")
    if "\x00" in path:
        raise DataPathError(f"dataset path {path!r} contains a NUL character")
    # Both spellings of "absolute": a leading slash, and a Windows drive or UNC share.
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive or PureWindowsPath(path).is_absolute():
        raise DataPathError(
            f"dataset path {path!r} is absolute: paths are relative to {where}; "
            f"put the data under it and give the path from there"
        )
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                raise DataPathError(f"dataset path {path!r} leaves {where}: '..' may not climb above it")
            parts.pop()
        elif part != ".":
            parts.append(part)
    if not parts:
        raise DataPathError(f"dataset path {path!r} names {where} itself: give the data set's file or folder under it")
    return PurePosixPath(*parts)


def resolve_under_root(path: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The absolute, symlink-free path of `path` under `root` (default `data_root()`), or DataPathError.

    Besides the lexical rule, every symlink on the way is followed, and the result must still lie
    under the (resolved) root: a link that points outside the root is refused. The path need not
    exist (a missing file is the reader's error, which names the expected layout).
    """
    root_path = Path(root) if root is not None else data_root()
    rel = check_relative_path(path, root_path)
    real_root = root_path.resolve()
    # Resolve the path as written (not the normalised `rel`): on disk, `link/..` is the parent of
    # the link's target, not `.`, and the OS will follow what the user wrote.
    real = (root_path / path).resolve()
    if not real.is_relative_to(real_root):
        raise DataPathError(
            f"dataset path {path!r} resolves to {real}, outside the data root ({real_root}): "
            f"a symlink under the root may not lead out of it"
        )
    if real == real_root:
        raise DataPathError(f"dataset path {path!r} names the data root ({real_root}) itself (through {rel})")
    return real
