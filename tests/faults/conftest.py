"""Prints the fault suite's counts at the end of the run, where the CI log shows them."""

import pytest

from tests.faults.harness import SUMMARY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("fault suite: nothing lost")
        for line in SUMMARY:
            terminalreporter.write_line(line)
