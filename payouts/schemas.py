"""Payout request and response types (msgspec). Money: integer minor units + currency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    period_end: Annotated[datetime, msgspec.Meta(
        description="Pay what partners earned from invoices paid up to this time (and older than PAYOUT_HOLDING_DAYS)",
        examples=["2026-11-01T00:00:00Z"])]


class HoldIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, examples=["Partner asked to verify bank details"])]


class LineOut(msgspec.Struct):
    id: str
    batch_id: str
    partner_id: str
    partner_name: str | None
    gross: int
    platform_fee: int
    amount: int
    currency: str
    status: str
    reason: str | None
    invoice_ids: list[str]
    stripe_transfer_id: str | None
    destination: str | None
    amount_reversed: int
    created_at: datetime
    paid_at: datetime | None = None


class TotalsOut(msgspec.Struct):
    currency: str
    lines: int
    gross: int
    platform_fee: int
    amount: int
    pending_review: int
    held: int
    in_flight: int
    paid: int
    failed: int
    carried_over: int


class BatchOut(msgspec.Struct):
    id: str
    status: str
    period_end: datetime
    cutoff: datetime
    created_at: datetime
    created_by: str
    approved_by: list[str]
    approved_at: datetime | None
    totals: list[TotalsOut]
    lines: list[LineOut]
    reconciled_at: datetime | None = None
    reconciliation: dict[str, Any] | None = None


class BatchSummaryOut(msgspec.Struct):
    id: str
    status: str
    period_end: datetime
    created_at: datetime
    approved_at: datetime | None
    totals: list[TotalsOut]


class ApproveOut(msgspec.Struct):
    batch: BatchOut
    enqueued: int
    awaiting_second_approval: bool


class BalanceOut(msgspec.Struct):
    currency: str
    earned: int
    pending: int
    in_holding: int
    in_batches: int
    held: int
    paid_out: int
    available: int


class PartnerBalanceOut(msgspec.Struct):
    partner_id: str
    balances: list[BalanceOut]


class PartnerPayoutOut(msgspec.Struct):
    id: str
    batch_id: str
    amount: int
    currency: str
    gross: int
    platform_fee: int
    status: str
    reason: str | None
    stripe_transfer_id: str | None
    created_at: datetime
    paid_at: datetime | None


class ReconciliationOut(msgspec.Struct):
    batch_id: str
    checked_at: str
    ok: bool
    lines_checked: int
    stripe_transfers: int
    differences: list[dict[str, Any]]
