"""A small named-backend registry with the pipeline's ``auto`` rule.

``auto`` picks the first registered backend whose ``availability`` check
passes (neural backends are registered first, so they win when their weights
are found locally) and prints one warning line when it falls back.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BackendEntry", "Registry", "UnknownBackendError"]


class UnknownBackendError(ValueError):
    """The requested backend name is not registered."""


@dataclass(frozen=True)
class BackendEntry:
    """One backend.

    Attributes:
      name: the ``--backend`` value.
      target: ``"module:attribute"`` of a factory ``f(**options) -> backend object``;
        imported only when the backend is built (heavy imports stay lazy).
      description: one line for ``--help``.
      needs_weights: True for neural backends.
      availability: ``f(**options) -> None`` when usable, else a reason string.
    """

    name: str
    target: str
    description: str
    needs_weights: bool = False
    availability: Callable[..., str | None] | None = None

    def unavailable_reason(self, **options: Any) -> str | None:
        return self.availability(**options) if self.availability else None

    def factory(self) -> Callable[..., Any]:
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)


@dataclass
class Registry:
    """Backends of one stage, in ``auto`` priority order."""

    stage: str
    entries: dict[str, BackendEntry] = field(default_factory=dict)

    def register(self, entry: BackendEntry) -> BackendEntry:
        if entry.name in self.entries or entry.name == "auto":
            raise ValueError(f"backend {entry.name!r} registered twice for {self.stage}")
        self.entries[entry.name] = entry
        return entry

    def names(self) -> list[str]:
        return list(self.entries)

    def choices(self) -> list[str]:
        """Values accepted by ``--backend``."""
        return ["auto", *self.entries]

    def help(self) -> str:
        lines = [f"{e.name}: {e.description}" for e in self.entries.values()]
        return "auto: the first usable of " + ", ".join(self.entries) + ". " + "; ".join(lines)

    def resolve(self, requested: str, **options: Any) -> BackendEntry:
        """The entry to use for ``requested`` (a name or ``auto``).

        An explicitly requested backend is returned even if unavailable (building
        it then raises the clear error); ``auto`` skips unavailable ones and warns.
        """
        if requested != "auto":
            if requested not in self.entries:
                raise UnknownBackendError(
                    f"unknown {self.stage} backend {requested!r}; choose from {self.choices()}"
                )
            return self.entries[requested]
        skipped = []
        for entry in self.entries.values():
            reason = entry.unavailable_reason(**options)
            if reason is None:
                if skipped:
                    print(
                        f"[{self.stage}] warning: using backend '{entry.name}' because "
                        + "; ".join(skipped),
                        file=sys.stderr,
                    )
                return entry
            skipped.append(f"'{entry.name}' is unavailable ({reason})")
        raise UnknownBackendError(f"no usable {self.stage} backend: " + "; ".join(skipped))

    def build(self, requested: str, **options: Any) -> tuple[BackendEntry, Any]:
        """Resolves ``requested`` and builds the backend with ``options``."""
        entry = self.resolve(requested, **options)
        return entry, entry.factory()(**options)
