"""Open an existing study read-only-ish (never creates a database or a study by accident)."""

from __future__ import annotations

from pathlib import Path

import optuna


class StudyNotFound(RuntimeError):
    """The storage or the study named on the command line does not exist; the message says which."""


def _storage(url: str) -> optuna.storages.BaseStorage | str:
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        if not path.exists():
            raise StudyNotFound(f"journal file {path} does not exist")
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():  # optuna would silently create an empty database here
            raise StudyNotFound(f"SQLite file {path} does not exist (storage {url})")
    return url


def load_study(name: str, storage_url: str) -> optuna.Study:
    """Load study ``name`` from ``storage_url`` (an Optuna URL or ``journal:PATH``)."""
    storage = _storage(storage_url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
        raise StudyNotFound(f"no study {name!r} in {display_url(storage_url)}; studies there: "
                            f"{', '.join(repr(n) for n in names) or 'none'}") from None


def display_url(url: str) -> str:
    """The storage URL with any password replaced by ``***`` (safe to print in a report)."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: drop the user-info part entirely
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
