"""TOML configuration -> typed, validated config (pydantic models, unknown keys rejected).

Lookup order: ``harbord --config FILE``, else ``$HARBORD_CONFIG``, else built-in defaults that
need no file: state and library under ``$STATE_DIRECTORY`` (systemd) or the user's data dir
(platformdirs), and an ``inbox`` folder there. ``etc/harbord.toml`` documents every key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from harbord.errors import ConfigError

WatchKind = Literal["inbox", "internet_archive", "youtube", "photos"]
Action = Literal["move", "copy", "link", "keep"]
DEFAULT_HANDLERS = ["parse", "probe", "checksum", "store", "embed", "index"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def default_root() -> Path:
    """Where state and library live with no config: ``$STATE_DIRECTORY`` or the user data dir."""
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    return Path(platformdirs.user_data_dir("harbord"))


class PathsConfig(_Model):
    """``[paths]``: where harbord keeps its state (SQLite, vectors) and the library objects."""

    state: Path = Field(default_factory=lambda: default_root() / "state")
    library: Path = Field(default_factory=lambda: default_root() / "library")


class WatchConfig(_Model):
    """One ``[[watch]]`` folder."""

    path: Path
    kind: WatchKind = "inbox"
    action: Action = "move"
    recursive: bool = True
    polling: bool = False
    """Use a polling observer (network shares where inotify is silent)."""
    poll_interval: float = Field(default=5.0, gt=0)
    """Seconds between scans when ``polling`` is on."""


class PipelineConfig(_Model):
    """``[pipeline]``: the handler chain and its workers."""

    handlers: list[str] = Field(default_factory=lambda: list(DEFAULT_HANDLERS))
    workers: int = Field(default=2, ge=1, le=64)
    settle_seconds: float = Field(default=2.0, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    """First retry delay; doubles each attempt (capped at ``retry_max_seconds``)."""
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    cpu_processes: int = Field(default=0, ge=0)
    """Processes for CPU-bound parsing/probing; 0 = one per core."""

    @field_validator("handlers")
    @classmethod
    def _known_handlers(cls, value: list[str]) -> list[str]:
        from handlers import BUILTIN

        unknown = [name for name in value if name not in BUILTIN]
        if unknown:
            raise ValueError(
                f"unknown handler(s) {unknown}; known: {sorted(BUILTIN)}"
            )
        if len(set(value)) != len(value):
            raise ValueError("a handler is listed twice")
        return value


class MqttConfig(_Model):
    """``[mqtt]``: the broker harbord publishes to. A broker outage never blocks ingestion."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    base_topic: str = "harbord"
    client_id: str = "harbord"
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    keepalive: int = Field(default=60, ge=5)
    discovery: bool = True
    discovery_prefix: str = "homeassistant"


class EmbedConfig(_Model):
    """``[embed]``: the embedding backend (see the README's search section)."""

    backend: Literal["minilm", "imagebind"] = "minilm"
    checkpoint: Path | None = None
    """ImageBind only: path of the weights file the user provides (never downloaded)."""
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = Field(default=64, ge=1)


class IndexConfig(_Model):
    """``[index]``: hnswlib ANN index parameters."""

    m: int = Field(default=16, ge=4, le=128)
    ef_construction: int = Field(default=200, ge=10)
    ef_search: int = Field(default=64, ge=10)
    save_every_seconds: float = Field(default=30.0, gt=0)


class LogConfig(_Model):
    """``[log]``: structlog output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Model):
    """The whole configuration file."""

    paths: PathsConfig = Field(default_factory=PathsConfig)
    watch: list[WatchConfig] = Field(default_factory=list)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @property
    def db_path(self) -> Path:
        """The SQLite file holding catalog, job table and outbox."""
        return self.paths.state / "harbord.db"

    def watches(self) -> list[WatchConfig]:
        """The watched folders; with none configured, one inbox under the default root."""
        if self.watch:
            return list(self.watch)
        return [WatchConfig(path=self.paths.state.parent / "inbox")]


def _format_error(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    return key, first["msg"]


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config.

    ``path`` wins, else ``$HARBORD_CONFIG``, else defaults. Raises ConfigError naming the
    offending key (``pipeline.handlers``, ``mqtt.prot`` ...) or the unreadable file.
    """
    if path is None:
        env = os.environ.get("HARBORD_CONFIG")
        path = Path(env) if env else None
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        key, msg = _format_error(err)
        raise ConfigError(f"{msg} (in {path})", key=key) from err


def ensure_dirs(config: Config) -> None:
    """Create the state, library and watched folders; raises ConfigError if one cannot be made."""
    for folder in [config.paths.state, config.paths.library, *(w.path for w in config.watches())]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create {folder}: {err.strerror}") from err
