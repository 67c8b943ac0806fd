"""The domains that make up the platform, in import order (see DESIGN.md: core ← partners ←
oauth ← marketplace domains ← payouts; webhooks depends on core only).

Each domain is a package with the same small file set; the app and the worker collect
`routes.ROUTES`, `routes.LIFESPANS`, `tasks.FUNCTIONS` and `tasks.CRON_JOBS` from whichever
of those modules a domain has, and Alembic imports every `models` module.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

DOMAINS = [
    "marketplace.accounts",
    "partners",
    "partners.publishing",
    "partners.connect",
    "webhooks",
    "oauth",
    "marketplace.catalog",
    "marketplace.subscriptions",
    "marketplace.gateway",
    "marketplace.metering",
    "marketplace.ledger",
    "marketplace.billing",
    "payouts",
    "marketplace.portal",
]


def _module(domain: str, name: str) -> ModuleType | None:
    try:
        if importlib.util.find_spec(f"{domain}.{name}") is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(f"{domain}.{name}")


def import_models() -> None:
    import marketplace.core.events  # noqa: F401  (the outbox table)

    for domain in DOMAINS:
        _module(domain, "models")


def collect(module_name: str, attribute: str) -> list[Any]:
    items: list[Any] = []
    for domain in DOMAINS:
        module = _module(domain, module_name)
        if module is not None:
            items.extend(getattr(module, attribute, []))
    return items
