"""One exception per way a command can fail; the CLI turns each into one line and a code."""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on: `str()` says what happened and what to do."""

    exit_code = 1


class AnswerError(CliError):
    """An answer was rejected by its question's validator; nothing was written."""

    exit_code = 2


class DestinationError(CliError):
    """The destination cannot be rendered into or updated."""

    exit_code = 3


class ToolMissingError(CliError):
    """A program the step needs is not installed."""

    exit_code = 4


class StepFailedError(CliError):
    """A command the step ran exited non-zero."""

    exit_code = 5
