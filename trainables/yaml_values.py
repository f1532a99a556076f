"""YAML as a person reads it, for specs, trial configs and ``KEY=VALUE`` overrides: ``1e-3`` is
a number (PyYAML follows YAML 1.1, where it is a string) and a key given twice is an error."""

from __future__ import annotations

import re
from typing import Any

import yaml


class HumanLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (safe), reading exponent floats without a dot and refusing
    duplicate keys."""


HumanLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_mapping(loader: HumanLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


HumanLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    """``text`` parsed with :class:`HumanLoader`; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=HumanLoader)  # a SafeLoader subclass: safe
