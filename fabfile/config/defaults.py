"""The tool's own defaults (defaults.yaml, shipped with it), under a project's invoke.yaml.

A key the project sets replaces the tool's default as a whole, so a project's `routes` or
`app_env` never gains entries it did not write.
"""
import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping

import yaml

from .declared import plain

DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.yaml"


@lru_cache(maxsize=1)
def _read() -> Dict[str, Any]:
    return yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))["deploy"]


def tool_defaults() -> Dict[str, Any]:
    """The tool's defaults for every `deploy:` key that has one (a fresh copy)."""
    return copy.deepcopy(_read())


def with_tool_defaults(declared: Mapping) -> Dict[str, Any]:
    """The project's `deploy:` keys over the tool's defaults."""
    merged = tool_defaults()
    merged.update(plain(declared) or {})
    return merged
