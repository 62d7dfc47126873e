"""Storage URLs: one opener for SQLite, PostgreSQL and journal files; one-line errors for an
unknown study (in every command that takes --study) and for a storage that cannot be reached."""

from __future__ import annotations

import socket
import subprocess
import sys

import optuna
import pytest

from hwssl.cli import main
from hwssl.storage import StorageError, StudyNotFound, display_url, load_study, open_storage


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_studies(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    for name in ("alpha", "beta"):
        optuna.create_study(study_name=name, storage=open_storage(url, create=True))
    return url


@pytest.mark.parametrize("command", [
    ["report"], ["report", "--study", "alpha", "--compare"], ["export", "--trial", "0", "--out", "OUT"], ["retime"],
])
def test_unknown_study_is_one_line_naming_study_storage_and_the_studies_there(command, two_studies, tmp_path,
                                                                             capsys):
    argv = [c.replace("OUT", str(tmp_path / "out")) for c in command]
    argv = argv[:1] + ["--study", "gamma", "--storage", two_studies] + argv[1:] if "--compare" not in argv else \
        argv + ["gamma", "--storage", two_studies]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "'gamma'" in err and two_studies in err and "'alpha', 'beta'" in err


def test_an_unreachable_postgresql_is_one_line_without_traceback(tiny_space_file):
    port = _closed_port()
    url = f"postgresql://hwssl:secret@127.0.0.1:{port}/nowhere"
    for argv in (["report", "--study", "x", "--storage", url],
                 ["search", "--space", str(tiny_space_file), "--no-profile", "--quiet", "--no-report",
                  "--storage", url, "--study", "x"]):
        run = subprocess.run([sys.executable, "-m", "hwssl.cli", *argv], capture_output=True, text=True, timeout=120)
        assert run.returncode != 0
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert f"127.0.0.1:{port}" in lines[0] and "secret" not in lines[0] and "***" in lines[0]
        assert "refused" in lines[0].lower() or "connect" in lines[0].lower(), lines[0]


def test_reading_never_creates_a_database_or_journal(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(StorageError, match="journal file .* does not exist"):
        open_storage(f"journal:{tmp_path / 'none.log'}")
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "none.log").exists()
    with pytest.raises(StorageError, match="not a database URL"):
        open_storage("hwssl.db", create=True)


def test_journal_storage_round_trip_and_unknown_study(tmp_path):
    url = f"journal:{tmp_path / 'j.log'}"
    study = optuna.create_study(study_name="j", storage=open_storage(url, create=True))
    study.set_user_attr("k", 1)
    assert load_study("j", url).user_attrs == {"k": 1}
    with pytest.raises(StudyNotFound, match=r"no study 'k' in journal:.*studies there: 'j'"):
        load_study("k", url)


def test_display_url_hides_the_password():
    assert display_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert display_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
