"""Public ids: a type prefix and a ULID, like Stripe's `cus_…`.

ULIDs sort by creation time, so ordering by id is "newest first" and ids double as pagination
cursors. They carry 80 random bits, so they cannot be guessed.
"""

from __future__ import annotations

from ulid import ULID

PREFIXES = {
    "user": "usr",
    "token": "tok",
    "partner": "prt",
    "member": "mem",
    "api": "api",
    "scope": "scp",
    "endpoint": "ep",
    "plan": "pln",
    "subscription": "sub",
    "api_key": "key",
    "app": "app",
    "grant": "grt",
    "event": "evt",
    "webhook_endpoint": "we",
    "delivery": "msg",
    "usage_event": "ue",
    "invoice": "in",
    "invoice_line": "il",
    "ledger_tx": "ltx",
    "ledger_entry": "le",
    "payout_batch": "pob",
    "payout_line": "po",
    "request": "req",
    "budget": "bud",
}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{str(ULID()).lower()}"


def has_prefix(value: str, kind: str) -> bool:
    return value.startswith(PREFIXES[kind] + "_")
