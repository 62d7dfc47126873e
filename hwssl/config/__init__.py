"""Configuration files: search spaces and hardware profiles (TOML), validated."""

from hwssl.config._reader import ConfigError, TableReader, load_toml

__all__ = ["ConfigError", "TableReader", "load_toml"]

from hwssl.config.space import SearchSpace, StrengthRange, load_search_space  # noqa: E402

__all__ += ["SearchSpace", "StrengthRange", "load_search_space"]

from hwssl.config.profile import HardwareProfile, load_profile  # noqa: E402

__all__ += ["HardwareProfile", "load_profile"]
