"""`pmtct replay`: what it rebuilds and where it connects (the rebuild itself: test_cohort.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from pmtct_tools.cli import app
from reporting.replay import postgres_socket_url


def test_only_reporting_has_a_read_model_to_rebuild() -> None:
    result = CliRunner().invoke(app, ["replay", "enrolment"])
    assert result.exit_code == 2
    assert "only reporting" in result.output


def test_the_local_runners_database_is_found_from_its_postmaster_pid(tmp_path) -> None:
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "postmaster.pid").write_text(
        "28873\n/data/postgres\n1795276451\n5433\n/run/pg-socket\n\n  2493267    589853\nready\n"
    )
    assert postgres_socket_url(tmp_path) == "postgresql://postgres@/postgres?host=/run/pg-socket&port=5433"
