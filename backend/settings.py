"""The backend's one settings object: every knob with a type, a default, bounds and one line of help.

Read from the environment with the prefix `CGGM_` (e.g. `CGGM_DB_URL`, `CGGM_TOKEN`,
`CGGM_DB_DIR`, `CGGM_HEARTBEAT_TIMEOUT_S`), or passed explicitly to `create_app`.

`CGGM_DATA_DIR` is not the backend's: it is a worker's data root (the user's data sets,
cggm_core.data.files.root). The backend's folder for its SQLite file is `CGGM_DB_DIR`, so that
setting a worker's data root on a machine that also runs the backend never moves the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_job_data_bytes() -> int:
    """Half of this machine's physical memory: the data must fit beside the model, the optimizer,
    the activations and the worker's Python itself. Workers on bigger machines: raise the setting."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): 8 GiB
        return 8 * 2**30


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CGGM_", extra="ignore")

    db_dir: Path = Field(default=Path("data"), description="folder for the default SQLite file; created on first run")
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite:///path.db or postgresql+psycopg://...); default <db_dir>/cggm.db",
    )
    token: str | None = Field(default=None, description="bearer token required on every write; None = no auth")
    token_reads: bool = Field(default=False, description="require the token on reads too (backend/read_auth.py)")
    max_batch: int = Field(default=10_000, ge=1, le=1_000_000, description="most points accepted in one metrics batch")
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, le=86_400, description="a running run whose worker is silent this long becomes 'lost'"
    )
    lost_check_interval_s: float = Field(
        default=5.0, gt=0, le=3_600, description="how often a background task looks for lost runs"
    )
    max_page: int = Field(default=500, ge=1, le=100_000, description="most runs returned by one GET /api/runs")
    read_chunk_points: int = Field(
        default=50_000,
        ge=100,
        le=10_000_000,
        description="a metrics read of more points than this is streamed, this many points per database query",
    )
    read_cache_mb: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="MB of encoded full series reads kept while the series is unchanged (backend/read_cache.py); 0 = off",
    )
    read_processes: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="helper processes for full and downsampled series reads while batches arrive, away from the ingest's GIL "
        "(backend/read_pool.py); 0 = every read in the server; default: 1 on SQLite, 0 on PostgreSQL (measured slower there)",
    )
    max_request_bytes: int = Field(
        default=1_048_576,
        ge=65_536,
        le=1_073_741_824,
        description="most bytes in one request body other than a metrics batch (configs, notes, summaries, events)",
    )
    max_job_data_bytes: int = Field(
        default_factory=default_job_data_bytes,
        ge=0,
        description="refuse a queued job whose data would take more memory than this (0 = no check); "
        "default: half of this machine's memory",
    )

    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.db_dir / 'cggm.db').resolve()}"

    @property
    def max_body_bytes(self) -> int:
        # A point is ~100 bytes of JSON; a key may be long. Anything much larger is not a batch we want.
        return self.max_batch * 1024 + 65_536
