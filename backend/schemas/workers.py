"""Worker schemas: the capabilities a worker sends with its claims, and WorkerPublic / WorkersPublic.

Capabilities ignore fields they do not know (where the run bodies forbid them): a worker of a
newer version may say more than this backend reads, and must still be able to claim.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .common import OneLine

Name = Annotated[OneLine, Field(min_length=1, max_length=100)]
Short = Annotated[OneLine, Field(max_length=200)]


class DeviceInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: Name = Field(description="as --device takes it: cpu, cuda:0, mps")
    kind: Name = Field(description="cpu, cuda or mps")
    description: Short | None = Field(None, description="e.g. the GPU's model name")
    memory_bytes: int | None = Field(None, ge=0, le=2**63 - 1, description="the device's total memory, when known")


class PluginRef(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    kind: Literal["dataset", "model"]
    name: Name
    package: Short | None = Field(None, description="the distribution that declares the entry point")
    version: Short | None = None
    entry_point: Annotated[OneLine, Field(max_length=500)] | None = None


class WorkerCapabilities(BaseModel):
    """What a worker can run, sent with every claim (cggm_core.worker.capabilities)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    datasets: list[Name] = Field(max_length=1000, description="dataset names it has, plugins included")
    models: list[Name] = Field(max_length=1000, description="model names it has, plugins included")
    device: Name | None = Field(None, description="the device it trains on")
    devices: list[DeviceInfo] = Field(default_factory=list, max_length=64, description="every device it sees")
    plugins: list[PluginRef] = Field(default_factory=list, max_length=1000)
    versions: dict[Name, Short] = Field(
        default_factory=dict, max_length=20, description="e.g. cggm_monitor, torch, python"
    )


class WorkerPublic(BaseModel):
    name: str
    connected: bool = Field(description="seen (a claim or a heartbeat) within the server's heartbeat timeout")
    first_seen_at: float = Field(description="Unix seconds")
    last_seen_at: float = Field(description="Unix seconds")
    capabilities: WorkerCapabilities | None = Field(
        description="as the worker last sent them; null for a worker of an older version that sends none"
    )
    datasets: list[str] = Field(description="the datasets whose jobs it is handed (the built-ins when it sent none)")
    models: list[str] = Field(description="the models whose jobs it is handed (the built-ins when it sent none)")
    running: list[int] = Field(description="ids of the runs it is training now")


class WorkersPublic(BaseModel):
    data: list[WorkerPublic]
    count: int
