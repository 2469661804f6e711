"""A name -> plugin table with helpful errors for unknown names."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from evalharness.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to plugin classes. Adding a plugin = one decorated class + one import."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            setattr(item, "name", name)
            return item

        return add

    def get(self, name: str, where: str = "") -> T:
        if name in self._items:
            return self._items[name]
        close = difflib.get_close_matches(name, self._items, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(self._items))
        prefix = f"{where}: " if where else ""
        raise UserError(f"{prefix}unknown {self.kind} {name!r}{hint}; known: {known}")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
