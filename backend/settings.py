"""The backend's one settings object: every knob with a type, a default, bounds and one line of help.

Read from the environment with the prefix `CGGM_` (e.g. `CGGM_DB_URL`, `CGGM_TOKEN`,
`CGGM_DATA_DIR`, `CGGM_HEARTBEAT_TIMEOUT_S`), or passed explicitly to `create_app`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CGGM_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="folder for the default SQLite file; created on first run")
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite:///path.db or postgresql+psycopg://...); default <data_dir>/cggm.db",
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

    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'cggm.db').resolve()}"

    @property
    def max_body_bytes(self) -> int:
        # A point is ~100 bytes of JSON; a key may be long. Anything much larger is not a batch we want.
        return self.max_batch * 1024 + 65_536
