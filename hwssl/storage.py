"""Study storage: the one place that turns a storage URL into an Optuna storage.

URLs: ``sqlite:///PATH`` (the default, ``hwssl.db`` in the working folder),
``postgresql://user:pass@host/db`` (several machines) and ``journal:PATH`` (an
Optuna journal file). Every command opens storage through :func:`open_storage`
and studies through :func:`load_study`, so a missing file, an unknown study or
an unreachable server is one line naming the URL (password hidden) instead of
a traceback or, worse, a silently created empty database.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # optuna is imported where storage is opened: `hwssl profiles` does not need it
    import optuna

DEFAULT_STORAGE_FILE = "hwssl.db"
JOURNAL_PREFIX = "journal:"


class StorageError(RuntimeError):
    """A storage cannot be opened (missing file, unreachable server, bad URL); one line."""


class StudyNotFound(StorageError):
    """The study named on the command line is not in the storage; the message lists what is."""


@dataclass(frozen=True)
class Heartbeat:
    """Heartbeats of a worker: a RUNNING trial whose worker died is failed and re-queued."""

    interval_s: int = 30
    grace_period_s: int = 90
    max_retry: int = 2


def default_storage_url() -> str:
    """``sqlite:///`` + the absolute path of ``hwssl.db`` in the working folder."""
    return f"sqlite:///{Path(DEFAULT_STORAGE_FILE).resolve()}"


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


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong, without SQLAlchemy's background links."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def open_storage(url: str, *, create: bool = False, heartbeat: Heartbeat | None = None
                 ) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``. Without ``create`` a SQLite or journal file must exist
    (reading never creates a database by accident). ``heartbeat`` applies to database storage
    (a journal file has no heartbeat). Raises :class:`StorageError` with one line."""
    import optuna

    shown = display_url(url)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        if not create and not path.exists():
            raise StorageError(f"journal file {path} does not exist (storage {shown})")
        from optuna.storages.journal import JournalFileBackend
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StorageError(f"cannot open storage {shown}: {_reason(exc)}") from None
    if url.startswith("sqlite:///") and not create:
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            raise StorageError(f"SQLite file {path} does not exist (storage {shown})")
    if "://" not in url:
        raise StorageError(f"storage {url!r} is not a database URL (sqlite:///PATH, postgresql://...) "
                           f"nor {JOURNAL_PREFIX}PATH")
    import sqlalchemy.exc

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs.update(heartbeat_interval=heartbeat.interval_s, grace_period=heartbeat.grace_period_s,
                          heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                              max_retry=heartbeat.max_retry))
    # Workers started together race to create the schema; the loser sees an IntegrityError (or
    # "table ... already exists", "database is locked") and simply connects again to the
    # now-initialised database. Any other failure (no server, bad credentials) is final.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or (
                isinstance(exc, sqlalchemy.exc.OperationalError)
                and any(s in str(exc) for s in ("already exists", "database is locked")))
            if not racing or attempt == 4:
                raise StorageError(f"cannot open storage {shown}: {_reason(exc)}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    import optuna

    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage))


def load_study(name: str, url: str) -> optuna.Study:
    """Study ``name`` from ``url``; :class:`StudyNotFound` lists the studies the storage holds."""
    import optuna

    storage = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        raise StudyNotFound(f"no study {name!r} in {display_url(url)}; studies there: "
                            f"{', '.join(repr(n) for n in names) or 'none'}") from None
