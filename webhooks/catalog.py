"""The event catalog: every event type the platform publishes, with a description and an example.

Other domains publish with `marketplace.core.events.publish(session, type, data, partner_id=…,
consumer_id=…)`; the owners named there receive it on their endpoints that subscribe to the type.
"""

from __future__ import annotations

from typing import Any, TypedDict


class EventType(TypedDict):
    description: str
    owners: str
    example: dict[str, Any]


_SUB = {"id": "sub_01jd0000000000000000000000", "api_id": "api_01jd0000000000000000000000",
        "plan_id": "pln_01jd0000000000000000000000", "consumer_id": "usr_01jd0000000000000000000000",
        "status": "active", "current_period_end": "2026-12-01T00:00:00Z"}
_INVOICE = {"id": "in_01jd0000000000000000000000", "consumer_id": "usr_01jd0000000000000000000000",
            "total": 4900, "currency": "usd", "status": "open",
            "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z"}
_PAYOUT = {"id": "po_01jd0000000000000000000000", "batch_id": "pob_01jd0000000000000000000000",
           "partner_id": "prt_01jd0000000000000000000000", "amount": 39200, "currency": "usd"}

EVENT_TYPES: dict[str, EventType] = {
    "api.published": {
        "description": "A partner's API was published to the catalog.", "owners": "partner",
        "example": {"id": "api_01jd0000000000000000000000", "slug": "weather", "name": "Weather",
                    "partner_id": "prt_01jd0000000000000000000000"},
    },
    "subscription.created": {
        "description": "A consumer subscribed to a plan.", "owners": "partner, consumer", "example": _SUB,
    },
    "subscription.updated": {
        "description": "A subscription changed plan or status.", "owners": "partner, consumer",
        "example": {**_SUB, "previous_plan_id": "pln_01jc0000000000000000000000"},
    },
    "subscription.canceled": {
        "description": "A subscription was canceled.", "owners": "partner, consumer",
        "example": {**_SUB, "status": "canceled"},
    },
    "usage.threshold_reached": {
        "description": "Usage in the period crossed a budget or quota threshold (e.g. 80 %).",
        "owners": "consumer",
        "example": {"subscription_id": _SUB["id"], "threshold_percent": 80, "used": 160000, "limit": 200000},
    },
    "quota.exceeded": {
        "description": "A hard quota was exhausted; calls are refused until the period ends.",
        "owners": "partner, consumer",
        "example": {"subscription_id": _SUB["id"], "used": 200000, "limit": 200000,
                    "resets_at": "2026-12-01T00:00:00Z"},
    },
    "invoice.finalized": {
        "description": "An invoice was finalized and will be charged.", "owners": "consumer",
        "example": _INVOICE,
    },
    "invoice.paid": {
        "description": "An invoice was paid.", "owners": "consumer", "example": {**_INVOICE, "status": "paid"},
    },
    "invoice.payment_failed": {
        "description": "Charging an invoice failed; update the payment method.", "owners": "consumer",
        "example": {**_INVOICE, "failure_message": "Your card was declined."},
    },
    "payout.batch_created": {
        "description": "A payout batch including this partner was created for operator review.",
        "owners": "partner",
        "example": {"batch_id": _PAYOUT["batch_id"], "line_id": _PAYOUT["id"], "amount": 39200, "currency": "usd"},
    },
    "payout.paid": {
        "description": "A payout to the partner's connected account succeeded.", "owners": "partner",
        "example": {**_PAYOUT, "transfer_id": "tr_1Q0000000000000000000000"},
    },
    "payout.failed": {
        "description": "A payout to the partner failed.", "owners": "partner",
        "example": {**_PAYOUT, "failure_message": "The connected account cannot receive transfers."},
    },
    "partner.connect_updated": {
        "description": "The partner's Stripe Connect status changed.", "owners": "partner",
        "example": {"partner_id": "prt_01jd0000000000000000000000", "connect_status": "enabled",
                    "charges_enabled": True, "payouts_enabled": True, "requirements": []},
    },
    "partner.suspended": {
        "description": "An operator suspended the partner: its APIs left the catalog and the gateway refuses them.",
        "owners": "partner",
        "example": {"partner_id": "prt_01jd0000000000000000000000", "reason": "Repeated chargebacks under review"},
    },
    "partner.reinstated": {
        "description": "An operator lifted the partner's suspension.", "owners": "partner",
        "example": {"partner_id": "prt_01jd0000000000000000000000", "reason": ""},
    },
    "endpoint.disabled": {
        "description": "One of your webhook endpoints was disabled (it answered 410 Gone, or failed "
                       "without a single success for days). Fix it and re-enable it with PATCH.",
        "owners": "partner or consumer (the endpoint's owner)",
        "example": {"endpoint_id": "we_01jd0000000000000000000000", "url": "https://example.com/hooks",
                    "reason": "failing since 2026-11-16T10:00:00Z"},
    },
    "webhook.test": {
        "description": "A test event sent by POST /v1/webhook-endpoints/{id}/test.",
        "owners": "the endpoint's owner",
        "example": {"message": "This is a test event from the API marketplace.",
                    "endpoint_id": "we_01jd0000000000000000000000"},
    },
}
