"""How the program ends a finished command: without the interpreter's teardown, but with every byte said."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from potluck.core.program import ENGINE_ENVIRONMENT_DEFAULTS, apply_engine_environment, program_command

CHILD = """
import logging, sys
from potluck.core.program import exit_quickly
logging.basicConfig(level=logging.INFO, format="%(message)s")
sys.stdout.write("x" * int(sys.argv[2]))  # 200k: more than a pipe holds; 100: still in Python's buffer
logging.info("the last log line")
exit_quickly(int(sys.argv[1]))
print("never")
"""


@pytest.mark.parametrize("code", [0, 1, 3])
def test_a_quick_exit_keeps_the_code_and_flushes_output_and_logs(code):
    done = subprocess.run([sys.executable, "-c", CHILD, str(code), "200000"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == code
    assert done.stdout == "x" * 200_000
    assert done.stderr.strip().endswith("the last log line")


def test_a_quick_exit_into_a_closed_pipe_still_ends_with_its_code():
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # the text waits in Python's buffer
    child = subprocess.Popen([sys.executable, "-c", CHILD, "4", "100"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=buffered)
    child.stdout.close()  # the reader went away (`potluck generate … | head -c 10`)
    assert child.wait(timeout=60) == 4


def test_the_engine_environment_fills_gaps_and_keeps_the_users_settings():
    environ = {"GOMP_SPINCOUNT": "5"}
    apply_engine_environment(environ)
    assert environ["GOMP_SPINCOUNT"] == "5"
    assert {k: v for k, v in environ.items() if k != "GOMP_SPINCOUNT"} == {
        k: v for k, v in ENGINE_ENVIRONMENT_DEFAULTS.items() if k != "GOMP_SPINCOUNT"}


@pytest.mark.parametrize("frozen,expected", [
    (True, ["/opt/potluck/potluck"]),
    (False, ["/opt/potluck/potluck", "-m", "potluck.core"]),
])
def test_the_program_runs_itself_frozen_or_as_a_package(frozen, expected):
    assert program_command(frozen=frozen, executable="/opt/potluck/potluck") == expected
