"""Decorator registry of the interchangeable Sinkhorn backends."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import Tensor

from hcm.core.registry import Registry
from hcm.model.ot.problem import SinkhornProblem


class SinkhornBackend:
    """A way to solve a :class:`SinkhornProblem`; subclasses register with :func:`register_backend`."""

    name: str = ""

    def plan(self, problem: SinkhornProblem) -> Tensor:
        """The transport plan, (B, M, N)."""
        raise NotImplementedError(f"backend {self.name!r} does not implement plan()")

    def transport(self, problem: SinkhornProblem, values: Tensor) -> Tensor:
        """``plan^T @ values`` for source-side values (B, M, d_v) -> (B, N, d_v)."""
        return torch.bmm(self.plan(problem).transpose(1, 2), values)


BACKENDS: Registry[type[SinkhornBackend]] = Registry("OT backend")
_B = TypeVar("_B", bound=type[SinkhornBackend])


def register_backend(name: str) -> Callable[[_B], _B]:
    """Class decorator: make the backend available as ``backend=name``."""

    def wrap(cls: _B) -> _B:
        cls.name = name
        return BACKENDS.register(name)(cls)

    return wrap


def get_backend(name: str) -> SinkhornBackend:
    """An instance of the backend registered as ``name`` (or pass ``backend="auto"``)."""
    return BACKENDS.get(name)()
