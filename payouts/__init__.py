"""Payouts: payout batches reviewed by operators, Stripe transfers sent exactly once, reconciliation."""
