"""TOML configuration -> typed, validated config (pydantic models, unknown keys rejected).

Lookup order: ``harbord --config FILE``, else ``$HARBORD_CONFIG``, else built-in defaults that
need no file: state and library under ``$STATE_DIRECTORY`` (systemd) or the user's data dir
(platformdirs), and an ``inbox`` folder there. ``etc/harbord.toml`` documents every key.

Besides each key's own type and range, the folders are checked against each other
(:func:`check_folders`): harbord refuses a config whose watched folders overlap each other,
the library or the state folder, since each such overlap loses files silently.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Self, TypeVar

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from harbord.errors import ConfigError
from harbord.job import Action, WatchKind

DEFAULT_HANDLERS = ["parse", "probe", "checksum", "store", "enrich", "embed", "index"]
S = TypeVar("S", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def default_root() -> Path:
    """Where state and library live with no config: ``$STATE_DIRECTORY`` or the user data dir."""
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    return Path(platformdirs.user_data_dir("harbord"))


def _refuse_empty(value: object) -> object:
    """A folder key must not be empty: pydantic would read ``""`` as ``Path(".")``, the
    working directory of whoever started harbord (a ``move`` watch then empties it)."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty (an empty path would mean the working directory)")
    return value


class PathsConfig(_Model):
    """``[paths]``: where harbord keeps its state (SQLite, vectors) and the library objects."""

    state: Path = Field(default_factory=lambda: default_root() / "state")
    library: Path = Field(default_factory=lambda: default_root() / "library")

    _not_empty = field_validator("state", "library", mode="before")(_refuse_empty)


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

    _not_empty = field_validator("path", mode="before")(_refuse_empty)


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
        from harbord.capability import STEPS

        unknown = [name for name in value if name not in STEPS]
        if unknown:
            raise ValueError(f"unknown handler(s) {unknown}; known: {sorted(STEPS)}")
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


class LogConfig(_Model):
    """``[log]``: structlog output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class CoreConfig(_Model):
    """The core sections of the configuration file; :data:`Config` adds the capabilities'."""

    paths: PathsConfig = Field(default_factory=PathsConfig)
    watch: list[WatchConfig] = Field(default_factory=list)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    def section(self, key: str, model: type[S]) -> S:
        """The capability section mounted under ``key``, typed as ``model``. Raises
        ConfigError when no capability contributes ``key`` with that model."""
        value = getattr(self, key, None)
        if not isinstance(value, model):
            raise ConfigError(f"no [{key}] section of type {model.__name__} is registered", key=key)
        return value

    @property
    def db_path(self) -> Path:
        """The SQLite file holding catalog, job table and outbox."""
        return self.paths.state / "harbord.db"

    def watches(self) -> list[WatchConfig]:
        """The watched folders; with none configured, one inbox under the default root."""
        if self.watch:
            return list(self.watch)
        return [WatchConfig(path=self.paths.state.parent / "inbox")]

    @model_validator(mode="after")
    def _folders_apart(self, info: ValidationInfo) -> Self:
        """Refuse overlapping folders (:func:`check_folders`). Raises ConfigError itself,
        not ValueError: pydantic would report a model-level error without a key."""
        source = info.context.get("source") if isinstance(info.context, dict) else None
        check_folders(self, source)
        return self


def _assemble() -> type[CoreConfig]:
    """The config model: the core sections plus every capability's, each under its own key
    (:func:`harbord.capability.config_sections`), defaults built when the key is absent."""
    from harbord.capability import config_sections

    fields: dict[str, Any] = {key: (model, Field(default_factory=model))
                              for key, model in config_sections().items()}
    clash = set(fields) & set(CoreConfig.model_fields)
    if clash:
        raise RuntimeError(f"capability config section(s) {sorted(clash)} clash with core sections")
    model = create_model("Config", __base__=CoreConfig, __module__=__name__, **fields)
    model.__doc__ = "The whole configuration file: core sections and the capabilities' sections."
    return model


if TYPE_CHECKING:
    Config = CoreConfig
else:
    Config = _assemble()


def _real(path: Path) -> Path:
    """``path`` absolute, with symlinks and ``..`` resolved (it need not exist)."""
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    """Resolved ``inner`` is ``outer`` or lies below it."""
    return inner == outer or inner.is_relative_to(outer)


def _shown(path: Path, real: Path) -> str:
    return str(path) if str(path) == str(real) else f"{path} (resolves to {real})"


def check_folders(config: Config, source: Path | str | None = None) -> None:
    """Raise ConfigError, naming the key, when the folders overlap in a way that loses files.

    Paths are compared resolved (symlinks, ``..``, relative to the working directory), so a
    symlink cannot dodge a rule. Refused, and why:

    * a watch equal to or inside ``paths.library``, or inside ``paths.state``: the watcher
      never offers files from those folders, so whatever is dropped there would silently never
      be ingested (key ``watch.N.path``);
    * ``paths.state`` equal to a watch, or ``paths.library`` / ``paths.state`` inside a
      recursive watch: harbord's own objects and database would sit in a drop folder (key
      ``paths.library`` / ``paths.state``). A non-recursive watch sees only its top level, so
      these folders may lie *below* one;
    * the same folder watched twice, or a watch inside a recursive watch: each file would be
      claimed by two watches with their own kind and action (key of the later or inner
      watch, ``watch.N.path``). Below a non-recursive watch another watch is allowed.

    With no ``[[watch]]`` the default inbox (``<state parent>/inbox``) is checked the same
    way; a clash with it names ``paths.library`` or ``paths.state``. ``source`` (the config
    file) is named in the message.
    """
    where = f" (in {source})" if source is not None else ""
    paths = config.paths
    state, library = _real(paths.state), _real(paths.library)
    default = not config.watch
    watches = [(None if default else f"watch.{i}.path", w, _real(w.path))
               for i, w in enumerate(config.watches())]

    def refuse(key: str, reason: str) -> NoReturn:
        raise ConfigError(reason + where, key=key)

    lib = f"paths.library ({_shown(paths.library, library)})"
    st = f"paths.state ({_shown(paths.state, state)})"
    for index, (key, watch, real) in enumerate(watches):
        name = _shown(watch.path, real)
        if key is None:
            name = f"the default inbox {name} (watched when no [[watch]] is configured)"
        if _within(real, library):
            refuse(key or "paths.library",
                   f"{name} is {'' if real == library else 'inside '}{lib}: files in the library "
                   "are never ingested, so nothing dropped there would be")
        if real == state:
            refuse("paths.state", f"{_shown(paths.state, state)} is also watched ({key or name}): "
                                  "keep harbord's own folders out of the drop folders")
        if real.is_relative_to(state):
            refuse(key or "paths.state", f"{name} is inside {st}: files in the state folder are "
                                         "never ingested, so nothing dropped there would be")
        for folder_key, folder, folder_real in (("paths.library", paths.library, library),
                                                ("paths.state", paths.state, state)):
            if watch.recursive and folder_real.is_relative_to(real):
                inside = f"{key} ({_shown(watch.path, real)}), a recursive watch" if key else name
                refuse(folder_key, f"{_shown(folder, folder_real)} is inside {inside}: keep "
                                   "harbord's own folders out of the drop folders")
        for other_key, other, other_real in watches[:index]:
            if key is None or other_key is None:  # the default inbox is the only watch
                continue
            if real == other_real:
                refuse(key, f"{name} is already watched by {other_key}: watch a folder once "
                            "(one kind and one action per folder)")
            if real.is_relative_to(other_real) and other.recursive:
                refuse(key, f"{name} is inside {other_key} ({_shown(other.path, other_real)}), a "
                            "recursive watch: its files would be claimed by both watches")
            if other_real.is_relative_to(real) and watch.recursive:
                refuse(other_key, f"{_shown(other.path, other_real)} is inside {key} ({name}), a "
                                  "recursive watch: its files would be claimed by both watches")


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
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} on "
                          f"line {line}); save it as UTF-8") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    try:
        return Config.model_validate(data, context={"source": path})  # ConfigError passes through
    except ValidationError as err:
        key, msg = _format_error(err)
        raise ConfigError(f"{msg} (in {path})", key=key) from err


def make_folder(folder: Path, key: str, *, writable: bool = False) -> None:
    """Create ``folder`` (and its parents) if missing. Raises ConfigError naming ``key`` with
    the OS's reason when it cannot be made (``/proc/harbord``, a file in the way, a read-only
    file system) or, with ``writable``, when files cannot be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise ConfigError(f"{folder} exists and is not a folder", key=key) from err
    except OSError as err:
        raise ConfigError(f"cannot create {folder}: {err.strerror or err}", key=key) from err
    if writable and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write in {folder}: permission denied or read-only", key=key)


def ensure_dirs(config: Config) -> None:
    """Create the state, library and watched folders; raises ConfigError naming the key of
    the one that cannot be made (the state and library folders must also be writable)."""
    make_folder(config.paths.state, "paths.state", writable=True)
    make_folder(config.paths.library, "paths.library", writable=True)
    for index, watch in enumerate(config.watches()):
        make_folder(watch.path, f"watch.{index}.path" if config.watch else "watch")
