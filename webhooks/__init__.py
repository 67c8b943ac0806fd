"""Webhooks: endpoints, the outbox relay, Standard Webhooks signing, delivery with retries, replay.

Depends on `marketplace.core` only; other domains publish through `marketplace.core.events.publish`.
"""

from webhooks import relay as _relay  # noqa: F401  (registers the after-commit relay nudge)
