"""The store's layout: every store class of the topic modules of `diarist.jobs.store` is part of `Store`, and no
topic hides another's methods (mixins resolve a shared name silently, by their order in `Store`'s bases)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import diarist.jobs.store
from diarist.jobs.store import Store
from diarist.jobs.store.core import Core


def topic_mixins() -> dict[str, str]:
    """The store classes defined in the topic modules: class name -> module name."""
    found = {}
    for module in pkgutil.iter_modules(diarist.jobs.store.__path__):
        loaded = importlib.import_module(f"diarist.jobs.store.{module.name}")
        for cls in vars(loaded).values():
            if inspect.isclass(cls) and issubclass(cls, Core) and cls.__module__ == loaded.__name__ and cls is not Core:
                found[cls.__name__] = module.name
    return found


def test_every_topic_with_a_store_class_is_part_of_store():
    mixins = topic_mixins()
    assert {"jobs", "keys", "leases", "media", "signing", "webhooks", "workers"} <= set(mixins.values())
    assert sorted(set(mixins) - {cls.__name__ for cls in Store.__mro__}) == []


def test_no_two_topics_define_the_same_method():
    owners: dict[str, list[str]] = {}
    for cls in Store.__mro__[1:-1]:  # the topics and the core: not Store itself, nor object
        for name in vars(cls):
            if not name.startswith("__"):
                owners.setdefault(name, []).append(cls.__name__)
    assert {name: classes for name, classes in owners.items() if len(classes) > 1} == {}
