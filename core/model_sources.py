"""Where base models and base policies may be loaded from.

A base model named in a form or the API ends up in ``from_pretrained`` on a training worker, which
reads (and for some formats executes) whatever that folder holds, or downloads a hub repository.
So a user-given location must be one of:

- a folder under a model root: ``settings.ARTIFACTS_ROOT`` (where the platform itself builds,
  trains and caches models) or a folder listed in ``settings.MODEL_ROOTS``;
- a location the platform already registered (the caller passes those, e.g. reward model
  folders or the base policies of registered checkpoints);
- a hub id (``org/name``), only where ``settings.ALLOW_HUB_MODELS`` is on.

Anything else is an ``ApplicationError`` naming the form field. Paths are compared after
``resolve()`` (``..`` and symbolic links followed), so a path cannot leave a root by spelling.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from .errors import ApplicationError

#: ``org/name`` as the Hugging Face hub spells repository ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_roots() -> list[Path]:
    """The resolved folders under which a base model may live (the artifacts root first)."""
    roots = [Path(settings.ARTIFACTS_ROOT), *(Path(str(p)) for p in getattr(settings, "MODEL_ROOTS", []) if str(p))]
    out: list[Path] = []
    for root in roots:
        resolved = root.expanduser().resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def _looks_local(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or Path(value).expanduser().exists() or not HUB_ID.match(value)


def check_model_source(value: str, *, field: str, what: str,
                       is_registered: Callable[[str], bool] = lambda _value: False) -> str:
    """Return ``value`` (stripped) when it may be loaded; else raise ``ApplicationError`` on ``field``.

    ``what`` names the kind of model in messages ("base model", "base policy"). ``is_registered``
    says whether the platform already knows this exact location (checked before the roots, so a
    location an administrator registered stays usable).
    """
    value = (value or "").strip()
    if not value:
        raise ApplicationError(f"Give a {what}.", fields={field: ["Required."]})
    if is_registered(value):
        return value
    if _looks_local(value):
        resolved = Path(value).expanduser().resolve()
        roots = model_roots()
        if not any(resolved.is_relative_to(root) for root in roots):
            raise ApplicationError(
                f"The {what} folder is outside the model roots.",
                fields={field: [f"{value!r} is not under a model root ({', '.join(str(r) for r in roots)}). "
                                "Copy the model under one, or add its folder to MODEL_ROOTS."]},
                code="model_source",
            )
        return value
    if not getattr(settings, "ALLOW_HUB_MODELS", False):
        raise ApplicationError(
            f"Hub models are not allowed for the {what}.",
            fields={field: [f"{value!r} is a hub id; this deployment loads models only from its model roots "
                            "(set ALLOW_HUB_MODELS=true to allow hub ids)."]},
            code="model_source",
        )
    return value
