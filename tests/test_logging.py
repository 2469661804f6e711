"""Library code logs; the CLI prints each record as one line on stderr; -q / -v set how much."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from evalharness import cli

NOTE = "note: huse: run pure has 3 rated texts (with the human ones); HUSE needs at least 17"


@pytest.fixture
def restore_logger():
    logger = logging.getLogger("evalharness")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers, logger.level = handlers, level


def emit(name: str = "evalharness.scorers.huse") -> None:
    log = logging.getLogger(name)
    log.debug("debug detail")
    log.info(NOTE)
    log.warning("--host 0.0.0.0: the rating page is reachable from the network")


@pytest.mark.parametrize("verbosity, lines", [
    (0, [NOTE, "warning: --host 0.0.0.0: the rating page is reachable from the network"]),
    (-1, ["warning: --host 0.0.0.0: the rating page is reachable from the network"]),
    (1, ["debug detail", NOTE, "warning: --host 0.0.0.0: the rating page is reachable from the network"]),
])
def test_the_cli_prints_each_record_as_one_line(verbosity, lines, capsys, restore_logger):
    cli.configure_logging(verbosity)
    emit()
    assert capsys.readouterr().err.splitlines() == lines


def test_configuring_twice_does_not_print_twice(capsys, restore_logger):
    cli.configure_logging(0)
    cli.configure_logging(0)
    emit()
    assert capsys.readouterr().err.count(NOTE) == 1


@pytest.mark.parametrize("flags, verbosity", [([], 0), (["--quiet"], -1), (["-v"], 1), (["-q"], -1)])
def test_quiet_and_verbose_flags(flags, verbosity):
    parser = cli.build_parser()
    assert parser.parse_args([*flags, "list"]).verbosity == verbosity
    assert parser.parse_args(["run", "x.yaml", *flags]).verbosity == verbosity


def test_a_library_user_sees_nothing_unless_they_configure_logging():
    code = ("import logging, evalharness\n"
            "log = logging.getLogger('evalharness.scorers.huse')\n"
            "log.info('a note'); log.warning('a warning')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == "" and out.stdout == ""


def test_a_library_user_can_capture_the_records(caplog):
    with caplog.at_level(logging.INFO, logger="evalharness"):
        emit()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO][0] == NOTE
