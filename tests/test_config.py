"""Config: defaults, validation errors that name the key, and the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from harbord.config import Config, load_config
from harbord.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "etc" / "harbord.toml"


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(section, key) for every leaf field of the config models."""
    out: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        sub = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            out += _fields(sub, f"{prefix}.{name}" if prefix else name)
        else:
            out.append((prefix, name))
    return out


def test_every_config_field_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    sections = re.split(r"^\[\[?([a-z_.]+)\]\]?\s*$", text, flags=re.M)
    by_section = {sections[i]: sections[i + 1] for i in range(1, len(sections), 2)}
    missing = []
    for section, key in _fields(Config):
        body = by_section.get(section, "")
        if not re.search(rf"^#?\s*{key}\s*=", body, flags=re.M):
            missing.append(f"{section}.{key}")
    assert missing == []


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.watch[0].kind == "inbox"
    assert config.pipeline.handlers[:4] == ["parse", "probe", "checksum", "store"]


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HARBORD_CONFIG", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    config = load_config(None)
    assert config.paths.state == tmp_path / "sd" / "state"
    assert config.paths.library == tmp_path / "sd" / "library"
    assert [w.path for w in config.watches()] == [tmp_path / "sd" / "inbox"]


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text('[pipeline]\nworkers = 7\n')
    monkeypatch.setenv("HARBORD_CONFIG", str(path))
    assert load_config(None).pipeline.workers == 7


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[mqtt]\nprot = 1883\n", "mqtt.prot"),
        ('[pipeline]\nhandlers = ["parse", "teleport"]\n', "pipeline.handlers"),
        ('[[watch]]\npath = "/x"\nkind = "ftp"\n', "watch.0.kind"),
        ("[pipeline]\nworkers = 0\n", "pipeline.workers"),
        ("[colour]\nx = 1\n", "colour"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[paths\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
