"""Configuration: declared options, TOML with file:line errors, environment, atomic set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spamkit.config import load_config, set_option
from spamkit.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(tmp_path / "none.toml", environ={})
    assert config["TagLevel"] == 4.0 and config["RejectLevel"] == 12.0
    assert config["BayesAutoLearnThresholdSpam"] == 6.0
    assert config["BayesAutoLearnThresholdNonspam"] == 0.10
    assert config["MaxMessageSize"] == 500_000
    assert (config["BayesMinSpam"], config["BayesMinHam"]) == (200, 200)
    assert config.tag_level == 5.0 and config.reject_level is None  # Sensitivity medium


@pytest.mark.parametrize("text, where, words", [
    ('TagLevel = 4\nTagLevle = 5\n', ":2", "did you mean TagLevel"),
    ('Sensitivity = "extreme"\n', ":1", "veryhigh, high, medium, low, verylow, custom"),
    ('UseBayes = "maybe"\n', ":1", "true or false"),
    ('TagLevel = 4\nMaxMessageSize = 10\n', ":2", "at least 1000"),
    ('TagLevel = = 4\n', ":1", ""),
    ('Sensitivity = "custom"\nTagLevel = 8\nRejectLevel = 6\n', ":3", "below TagLevel"),
])
def test_errors_name_file_line_and_option(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = tmp_path / "spamkit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value).startswith(f"{path}{where}:")
    assert words in str(error.value)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spamkit.toml"
    path.write_text("TagLevel = 4.0\n")
    config = load_config(path, environ={"SPAMKIT_TAGLEVEL": "6.5", "SPAMKIT_SORTSPAM": "enabled"})
    assert config["TagLevel"] == 6.5 and config["SortSpam"] is True
    assert config.origins["TagLevel"] == "$SPAMKIT_TAGLEVEL"
    with pytest.raises(ConfigError, match=r"\$SPAMKIT_TAGLEVEL: TagLevel must be a number"):
        load_config(path, environ={"SPAMKIT_TAGLEVEL": "high"})


def test_set_keeps_other_lines_and_never_writes_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "spamkit.toml"
    set_option(path, "Sensitivity", "custom")
    path.write_text(path.read_text() + "# my note\nRejectLevel = 12.0\n")
    set_option(path, "taglevel", "4")  # option names are case-insensitive
    text = path.read_text()
    assert "# my note" in text and "TagLevel = 4.0" in text
    before = path.read_text()
    with pytest.raises(ConfigError, match="below TagLevel"):
        set_option(path, "RejectLevel", "3")
    assert path.read_text() == before
    assert not [p for p in os.listdir(path.parent) if p.startswith(".")]  # no temporary left


@pytest.mark.parametrize("preset, level", [("veryhigh", 2), ("high", 3), ("medium", 5),
                                            ("low", 7), ("verylow", 9)])
def test_sensitivity_presets_tag_and_never_reject(tmp_path: Path, preset: str, level: float) -> None:
    path = tmp_path / "spamkit.toml"
    path.write_text(f'Sensitivity = "{preset}"\nTagLevel = 1\nRejectLevel = 3\n')
    config = load_config(path, environ={})
    assert config.tag_level == level and config.reject_level is None
