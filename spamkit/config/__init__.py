"""spamkit's configuration: declared options, a TOML file, environment overrides."""

from spamkit.config.loader import (
    Config,
    config_from_text,
    default_config_path,
    format_value,
    load_config,
    set_option,
    unset_option,
    write_atomically,
)
from spamkit.config.options import OPTIONS, OPTIONS_BY_NAME, SENSITIVITY_LEVELS, Option

__all__ = ["OPTIONS", "OPTIONS_BY_NAME", "SENSITIVITY_LEVELS", "Config", "Option", "config_from_text",
           "default_config_path", "format_value", "load_config", "set_option", "unset_option", "write_atomically"]
