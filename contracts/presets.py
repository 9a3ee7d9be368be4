"""The one preset loader: a preset is a JSON file ``<directory>/<name>.json``, read strictly.

Presets are files only (``configs/reward/`` for reward training, ``configs/demo/`` for the demo
sizes); there is no second, built-in table a file could shadow or fall back to. Earlier, a file
named like a built-in silently replaced it and a broken file silently fell back to the built-in, so
what a run trained with depended on whether a file parsed.

Strict means:

- an unknown name (or one that is not a plain slug, so it cannot walk out of the directory) is
  :class:`UnknownPreset` (also a ``KeyError``), naming the presets there are;
- a file that is not valid JSON, not a JSON object, or holds a key that is not an allowed field
  is :class:`PresetError`, naming the file; keys starting with ``_`` are comments and dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

#: Preset names are file stems: letters, digits, ``_`` and ``-``.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class PresetError(ValueError):
    """A preset file is broken (the message names the file and what is wrong)."""


class UnknownPreset(PresetError, KeyError):
    """No preset of that name (a KeyError too, for callers that look presets up like a table)."""

    __str__ = BaseException.__str__  # KeyError would quote the message


def preset_names(directory: str | Path) -> list[str]:
    """The names of the presets in ``directory`` (the stems of its ``*.json`` files), sorted."""
    root = Path(directory)
    return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []


def load_preset_file(directory: str | Path, name: str, *, fields: Collection[str] | None = None,
                     what: str = "preset") -> dict[str, Any]:
    """The preset ``name`` of ``directory`` as a dict, without ``_``-comment keys.

    ``fields``: the keys a preset may hold (a config's field names); None accepts any key.
    Raises UnknownPreset or PresetError (see the module docstring); never falls back.
    """
    root = Path(directory)
    path = root / f"{name}.json"
    if not isinstance(name, str) or not NAME_RE.match(name) or not path.is_file():
        raise UnknownPreset(f"no {what} {name!r} in {root} (have: {', '.join(preset_names(root)) or 'none'})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"{what} file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PresetError(f"{what} file {path} must hold a JSON object, not {type(data).__name__}")
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    if fields is not None:
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise PresetError(f"{what} file {path}: unknown field(s) {', '.join(unknown)}")
    return data
