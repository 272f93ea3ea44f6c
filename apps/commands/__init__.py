"""The declarations of ``hcm``'s commands: each command's options, defaults and help, one module per
group of commands (``quickstart``; ``data``: sample, extract, import, cache; ``training``: train,
evaluate, runs, predict, ablate; ``studies``: reproduce, tune; ``inside``: explain, report).

A declaration is a function marked with :func:`command`; ``hcm.cli`` adds it to the command line
with one :func:`register` line, in the order of ``hcm --help``. Its body checks what the options
alone cannot, then imports the command's function from ``hcm.apps`` and calls it: the heavy
libraries (torch, transformers) load only after every argument passed (docs/architecture.md,
Adding a command).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import typer

from hcm.apps import options

Declaration = TypeVar("Declaration", bound=Callable[..., None])
MARK = "__hcm_command__"  # the attribute :func:`command` sets on a declaration


@dataclass(frozen=True)
class Declared:
    """What :func:`command` records: the name on the command line and the examples of its help."""

    name: str
    examples: tuple[str, ...]


def command(name: str, *examples: str) -> Callable[[Declaration], Declaration]:
    """Mark a function as the declaration of command ``name``, with at least one example line."""
    if not examples:
        raise ValueError(f"command {name!r}: give at least one example for its help")

    def mark(function: Declaration) -> Declaration:
        setattr(function, MARK, Declared(name, examples))
        return function

    return mark


def register(parent: typer.Typer, declaration: Callable[..., None]) -> None:
    """Add a declaration marked with :func:`command` to ``parent`` (the root app or a group)."""
    declared = getattr(declaration, MARK, None)
    if not isinstance(declared, Declared):
        raise TypeError(f"{declaration.__qualname__} is not marked with @command(name, example)")
    parent.command(declared.name, **options.example(*declared.examples))(declaration)


def group(parent: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """A group of commands (``hcm import``, ``hcm cache``) under ``parent``; :func:`register` fills it."""
    commands = typer.Typer(cls=options.HcmGroup, help=help_text, no_args_is_help=True, rich_markup_mode=None)
    parent.add_typer(commands, name=name)
    return commands
