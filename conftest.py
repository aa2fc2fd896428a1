"""Collection for the whole suite (tests/ and the package's doctests)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Docstring examples that only illustrate (every line ``+SKIP``: a training run, a download) are
    documentation, not tests: they are left out instead of being reported as skipped."""
    import doctest

    from _pytest.doctest import DoctestItem

    def illustrative(item: pytest.Item) -> bool:
        examples = item.dtest.examples if isinstance(item, DoctestItem) and item.dtest else []
        return bool(examples) and all(e.options.get(doctest.SKIP) for e in examples)

    kept = [item for item in items if not illustrative(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if illustrative(item)])
        items[:] = kept
