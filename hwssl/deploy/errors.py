"""The one exception type of the deployment layer."""

from __future__ import annotations


class DeployError(RuntimeError):
    """A network cannot be built, exported or timed for a profile.

    The message names the profile file (and key, where one is to blame) and
    says what to do, e.g.::

        hardware_profiles/arm_cortex_a72.toml: key 'cross_compiler': 'aarch64-linux-gnu-g++' is not on PATH;
        install it (apt-get install g++-aarch64-linux-gnu) or set cross_compiler
    """

    def __init__(self, profile_path: str, message: str, key: str | None = None) -> None:
        self.profile_path = profile_path
        self.key = key
        self.message = message
        where = f"{profile_path}: key '{key}'" if key else profile_path
        super().__init__(f"{where}: {message}")
