"""spamkit's configuration: declared options, a TOML file, environment overrides."""

from spamkit.atomicfile import write_atomically
from spamkit.config.loader import (
    Config,
    check_user_name,
    config_from_text,
    default_config_path,
    format_value,
    load_config,
    set_option,
    unset_option,
)
from spamkit.config.options import OPTIONS, OPTIONS_BY_NAME, SENSITIVITY_LEVELS, Option

__all__ = ["OPTIONS", "OPTIONS_BY_NAME", "SENSITIVITY_LEVELS", "Config", "Option", "check_user_name",
           "config_from_text", "default_config_path", "format_value", "load_config", "set_option",
           "unset_option", "write_atomically"]
