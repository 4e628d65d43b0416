"""The deployment config: every mistake is one line naming the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from broker.config import ConfigError, load_config
from broker.scaffold import write_deployment


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_deployment(tmp_path / "dep", bootstrap_servers="127.0.0.1:9")


def _edit(path: Path, change: str, to: str) -> None:
    text = path.read_text()
    assert change in text
    path.write_text(text.replace(change, to, 1))


def test_generated_config_loads(config_path: Path) -> None:
    config = load_config(config_path)
    assert config.router.id == "router.main"
    assert "police.met" in config.agency_ids
    assert config.agency("police.met").kind == "police"
    # Relative paths are resolved against the config file's directory.
    assert config.router.signing_key.is_file()
    assert config.keys_dir == config_path.parent / "keys"


def test_missing_field_names_line_and_fix(config_path: Path) -> None:
    data = yaml.safe_load(config_path.read_text())
    del data["router"]["signing_key"]
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as error:
        load_config(config_path)
    message = str(error.value)
    assert message.startswith(f"{config_path}:")
    assert "`router.signing_key`" in message
    assert "add `signing_key`" in message


def test_bad_value_points_at_its_line(config_path: Path) -> None:
    data = yaml.safe_load(config_path.read_text())
    data["router"]["batch_max_records"] = 0
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    line = next(
        number
        for number, text in enumerate(config_path.read_text().splitlines(), start=1)
        if "batch_max_records" in text
    )
    with pytest.raises(ConfigError, match=rf":{line}: `router.batch_max_records`"):
        load_config(config_path)


def test_unknown_key_is_named(config_path: Path) -> None:
    _edit(config_path, "keys_dir: keys", "keys_dir: keys\nkeyz_dir: typo")
    with pytest.raises(ConfigError, match=r"`keyz_dir`.*remove it or correct its spelling"):
        load_config(config_path)


def test_invalid_yaml_names_the_line(config_path: Path) -> None:
    _edit(config_path, "keys_dir: keys", "keys_dir: [keys")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: not valid YAML"):
        load_config(config_path)


def test_duplicate_key_is_refused(config_path: Path) -> None:
    _edit(config_path, "keys_dir: keys", "keys_dir: keys\nkeys_dir: other")
    with pytest.raises(ConfigError, match="appears twice"):
        load_config(config_path)


def test_missing_keys_dir_says_what_to_do(config_path: Path) -> None:
    _edit(config_path, "keys_dir: keys", "keys_dir: nowhere")
    with pytest.raises(ConfigError, match=r"keys_dir .* is not a directory: create it"):
        load_config(config_path)


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_unregistered_agency_is_named(config_path: Path) -> None:
    config = load_config(config_path)
    with pytest.raises(ConfigError, match=r"police\.nowhere is not in the `agencies` registry"):
        config.agency("police.nowhere")


def test_pseudonym_keys_differ_per_recipient(config_path: Path) -> None:
    config = load_config(config_path)
    assert config.pseudonym_key("police.met") != config.pseudonym_key("stats.national")
    assert config.pseudonym_key("police.met") == config.pseudonym_key("police.met")
