"""hcm's error types and the one place that turns them into messages and exit codes.

Every command runs through :func:`report_errors`. Exit codes are the same for all of them:

    0  done
    1  the work failed (a damaged file, a cache of another recipe, a numerical failure, ...)
    2  usage error: a bad option, name, path or setting; nothing was done
    130  interrupted (Ctrl-C, SIGINT); work already written is kept and a re-run resumes
    143  stopped by SIGTERM (how SLURM and Kubernetes preempt a job); as 130, 128 + the signal number
"""

from __future__ import annotations

import sys
from typing import Any, Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class HcmError(Exception):
    """A failure hcm can explain: the message says what, with which value, and what to do."""

    exit_code = EXIT_FAILED


class UsageError(HcmError, ValueError):
    """The user asked for something that cannot work (unknown name, bad value, missing input)."""

    exit_code = EXIT_USAGE


class UnknownNameError(UsageError, KeyError):
    """A name (dataset, encoder, backend, ...) that is not registered."""

    __str__ = Exception.__str__  # KeyError would quote the message


class Interrupted(HcmError):
    """The work stopped on a signal after saving what it had; the message says how to continue."""

    def __init__(self, message: str, exit_code: int = EXIT_INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Standard exceptions that carry a message written for the user (hcm raises them with one).
_MESSAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError)


def exit_code_of(error: BaseException) -> int:
    """The exit status for an error ``report_errors`` prints."""
    if isinstance(error, HcmError):
        return error.exit_code
    return int(getattr(error, "exit_code", EXIT_FAILED))


def report_errors(work: Callable[[], Any], also: tuple[type[BaseException], ...] = (),
                  interrupted: str = "interrupted") -> int:
    """Run ``work``; print a known error as one line on stderr instead of a traceback.

    Args:
        work: the command's body.
        also: further exception types whose message is meant for the user.
        interrupted: what to say on Ctrl-C (e.g. how to resume).

    Returns the exit status (see the module docstring).
    """
    try:
        work()
    except KeyboardInterrupt:
        _say(f"[bold yellow]{interrupted}[/]")
        return EXIT_INTERRUPTED
    except Interrupted as stop:
        _say(f"[bold yellow]{stop}[/]")
        return stop.exit_code
    except (HcmError, *_MESSAGE_ERRORS, *also) as error:
        _say("[bold red]error:[/] " + _escape(str(error)))  # a message may hold brackets: pip install 'hcm[serve]'
        return exit_code_of(error)
    return EXIT_OK


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _say(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(message)


def fail(message: str) -> None:
    """Print an error line on stderr (for commands that report several problems)."""
    print(f"error: {message}", file=sys.stderr)
