"""One decorator registry for every family of interchangeable parts (datasets, encoders, sample
corpora, OT backends, graph builders, task losses)::

    LOSSES = Registry("task loss")

    @LOSSES.register("l1")
    def l1_loss(...): ...

    LOSSES.get("L1")  # names are case-insensitive; an unknown one lists the known names
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from hcm.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, filled by the :meth:`register` decorator at import time.

    Args:
        kind: what the entries are, for messages ("dataset", "OT backend").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: file the decorated object under ``name`` (stored in lower case)."""
        key = name.lower()

        def wrap(obj: T) -> T:
            held = self._entries.get(key)
            if held is not None and held is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {_label(held)}")
            self._entries[key] = obj
            return obj

        return wrap

    def get(self, name: str) -> T:
        """The entry called ``name`` (any case); otherwise an :class:`UnknownNameError` (a usage
        error, also a ``KeyError`` and a ``ValueError``) listing the known names."""
        try:
            return self._entries[str(name).lower()]
        except KeyError:
            known = ', '.join(self.names()) or 'none'
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def copy(self) -> Registry[T]:
        """A registry with the same entries (tests register toy parts into a copy)."""
        twin: Registry[T] = Registry(self.kind)
        twin._entries = dict(self._entries)
        return twin

    def name_of(self, obj: object) -> str | None:
        """The name ``obj`` is registered under, or None."""
        return next((key for key, held in self._entries.items() if held is obj), None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _label(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__
