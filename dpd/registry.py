"""A registry of named entries, filled by decorators, in the manner of torchdistill.

dpd keeps its extension points as registries: learners by algorithm name
(``@register_learner("ppo")``), peer backends (``@register_backend("process")``) and losses
(``@register_loss``). One class holds what they share: a name registers once, lookups of an
unknown name are a user error naming the valid choices, and the registry reads as a mapping.
"""

from typing import Callable, Dict, Generic, Iterator, List, Mapping, TypeVar

from dpd.errors import unknown_choice

Entry = TypeVar("Entry")
Registered = TypeVar("Registered")


class Registry(Mapping[str, Entry], Generic[Entry]):
    """Entries by name; ``what`` names the kind in messages (``"backend"``: "unknown backend ...")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: Dict[str, Entry] = {}

    def add(self, name: str, entry: Entry) -> None:
        """Register ``entry`` under ``name``; a name registers once (a second is a programming error)."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered (by {_label(self._entries[name])})")
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[Registered], Registered]:
        """Decorator: register the decorated class (or function) itself under ``name``."""

        def decorator(entry: Registered) -> Registered:
            self.add(name, entry)  # type: ignore[arg-type]
            return entry

        return decorator

    def get_or_refuse(self, name: str) -> Entry:
        """The entry called ``name``; a ``UserError`` naming the valid choices otherwise."""
        if name not in self._entries:
            raise unknown_choice(self.what, name, self.names())
        return self._entries[name]

    def names(self) -> List[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a test's temporary entry)."""
        del self._entries[name]

    def __getitem__(self, name: str) -> Entry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _label(entry: object) -> str:
    return getattr(entry, "__name__", None) or getattr(entry, "name", None) or type(entry).__name__
