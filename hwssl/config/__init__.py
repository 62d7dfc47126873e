"""Configuration files: search spaces and hardware profiles (TOML), validated."""

from hwssl.config._reader import ConfigError, TableReader, load_toml

__all__ = ["ConfigError", "TableReader", "load_toml"]

from hwssl.config.space import SearchSpace, StrengthRange, load_search_space  # noqa: E402

__all__ += ["SearchSpace", "StrengthRange", "load_search_space"]

from hwssl.config.profile import (  # noqa: E402
    HardwareProfile,
    list_profiles,
    load_profile,
    profile_availability,
)

__all__ += ["HardwareProfile", "list_profiles", "load_profile", "profile_availability"]
