"""``hwssl check FILE``: validate a search space or a hardware profile, whichever the file is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hwssl.config._reader import ConfigError, load_toml

Kind = Literal["space", "profile"]


def file_kind(raw: dict) -> Kind | None:
    """What a parsed file is, by content: a profile has a ``target`` and no ``[model]``; a space has ``[model]``."""
    if "model" in raw:
        return "space"
    if "target" in raw or "runner" in raw or "tuning" in raw or "timing" in raw:
        return "profile"
    return None


def check_file(path: str | Path, kind: Kind | None = None) -> str:
    """Validate ``path`` as ``kind`` (recognised by content when None); the line ``hwssl check`` prints.

    Raises :class:`ConfigError` naming the file (and key) when it is invalid or neither kind.
    """
    raw = load_toml(path)
    kind = kind or file_kind(raw)
    if kind == "profile":
        from hwssl.config.profile import load_profile
        p = load_profile(path)
        where = p.runner.address()
        return (f"ok: {path} is a hardware profile ({p.name}: {p.target_kind} target, {p.threads} "
                f"thread{'s' if p.threads != 1 else ''}, batch {p.batch}, runner {where})")
    if kind == "space":
        from hwssl.config.space import parse_search_space
        s = parse_search_space(raw, path)
        mix = f"{len(s.search.budget_mix)} mix strengths"
        if s.search.mode == "strengths":
            searched = f"{len(s.search.strengths)} searched"
        elif s.search.mode == "path":
            searched = f"path search: {mix}, snapshots at targets {s.search.path_targets()}"
        else:
            searched = f"budget search: a target and {mix}"
        return f"ok: {path} is a search space ({s.model.name} on {s.data.name}, {len(s.strengths)} strengths, {searched})"
    raise ConfigError(path, None, "neither a search space (it has no [model] table) nor a hardware profile (it has "
                                  "no target = { kind = ... }); see search_spaces/ and hardware_profiles/ for examples")
