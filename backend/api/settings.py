"""Server settings: one pydantic model filled from ``PSS_*`` environment variables and ``pss serve`` flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the backend. Flags given to ``pss serve`` win over ``PSS_*`` variables, which win over
    these defaults; e.g. ``PSS_MAX_UPLOAD_BYTES=5242880``."""

    model_config = SettingsConfigDict(env_prefix="PSS_", extra="ignore")

    artifacts: Path = Field(description="artifacts dir written by `pss precompute`")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    max_upload_bytes: int = Field(10 * MB, ge=1, description="largest accepted upload request body")
    max_upload_pixels: int = Field(40_000_000, ge=1, description="largest accepted image, checked from its header")
    max_json_bytes: int = Field(64 * 1024, ge=1, description="largest accepted body of any other request")
    upload_cache_size: int = Field(128, ge=1, description="uploads kept in memory (least recently used dropped)")
    upload_ttl_s: float = Field(3600.0, gt=0, description="an upload expires this long after its last use")
    result_cache_size: int = Field(256, ge=0, description="cached maps/profiles/prunings; 0 disables the cache")
    result_ttl_s: float = Field(900.0, gt=0)
    queue_size: int = Field(32, ge=1, description="compute jobs waiting for the model before answering 503")
    retry_after_s: int = Field(2, ge=1, description="Retry-After sent with a 503")
    prune_neighbors: int = Field(10, ge=0, le=100, description="default neighbours re-evaluated by a pruning")
    torch_threads: int = Field(
        1, ge=0, description="CPU threads of the compute worker's torch ops; 0 keeps torch's default (one per core). "
        "One is the default because OpenMP teams stall when other processes share the cores",
    )
    cors_origins: list[str] = Field(default_factory=list, description="allowed CORS origins; none by default")
    check_artifacts: bool = Field(True, description="refuse artifacts whose model/layout/dataset hash differs")
