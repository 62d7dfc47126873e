"""Configuration files: search spaces and hardware profiles (TOML), validated."""

from hwssl.config._reader import ConfigError, TableReader, load_toml

__all__ = ["ConfigError", "TableReader", "load_toml"]
