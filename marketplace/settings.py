"""One settings object, read from the environment (see .env.example for every variable)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # Every Redis key and queue name starts with this, so several deployments (or test runs)
    # can share one Redis without seeing each other's keys.
    redis_namespace: str = Field(default="mkt", alias="REDIS_NAMESPACE")
    data_dir: Path = Field(default=Path("./.marketplace"), alias="MARKETPLACE_DATA_DIR")
    allow_private_networks: bool = Field(default=False, alias="MARKETPLACE_ALLOW_PRIVATE_NETWORKS")
    base_url: str = Field(default="http://127.0.0.1:8000", alias="MARKETPLACE_BASE_URL")
    # Encrypts secrets we must use again (webhook signing secrets, proxy secrets). 32 url-safe
    # base64 bytes (a Fernet key); derived from data_dir when unset so dev works out of the box.
    secret_key: str | None = Field(default=None, alias="MARKETPLACE_SECRET_KEY")
    log_json: bool = Field(default=True, alias="MARKETPLACE_LOG_JSON")
    log_level: str = Field(default="INFO", alias="MARKETPLACE_LOG_LEVEL")
    token_ttl_days: int = Field(default=30, alias="MARKETPLACE_TOKEN_TTL_DAYS")
    run_worker_in_process: bool | None = Field(default=None, alias="MARKETPLACE_INPROCESS_WORKER")

    platform_fee_percent: int = Field(default=20, ge=0, le=100, alias="PLATFORM_FEE_PERCENT")
    stripe_secret_key: str | None = Field(default=None, alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: str | None = Field(default=None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE")
    payout_holding_days: int = Field(default=7, ge=0, alias="PAYOUT_HOLDING_DAYS")
    payout_minimum_amount: int = Field(default=100, ge=0, alias="PAYOUT_MINIMUM_AMOUNT")
    # A batch whose payable total in any currency is above this (minor units) needs two different
    # operators to approve it. Unset: one approval is enough.
    payout_second_approval_above: int | None = Field(default=None, ge=0, alias="PAYOUT_SECOND_APPROVAL_ABOVE")
    webhook_retry_schedule: str = Field(
        default="0,5,300,1800,7200,18000,36000,36000", alias="WEBHOOK_RETRY_SCHEDULE"
    )
    # Billing: days a past_due subscription may still call before it becomes unpaid (402 at the gateway),
    # hours between charge retries of a failed invoice, and how many attempts in all.
    billing_grace_days: int = Field(default=3, ge=0, alias="BILLING_GRACE_DAYS")
    billing_retry_hours: int = Field(default=24, ge=1, alias="BILLING_RETRY_HOURS")
    billing_max_attempts: int = Field(default=4, ge=1, alias="BILLING_MAX_ATTEMPTS")
    # An endpoint whose attempts have all failed for this long is disabled (endpoint.disabled).
    webhook_disable_after_days: float = Field(default=5, gt=0, alias="WEBHOOK_DISABLE_AFTER_DAYS")
    # Events and delivery attempts older than this are purged daily.
    webhook_retention_days: int = Field(default=90, ge=1, alias="WEBHOOK_RETENTION_DAYS")
    metrics_token: str | None = Field(default=None, alias="METRICS_TOKEN")

    # OAuth 2.0 authorization server (oauth/): access-token JWT lifetime in seconds, refresh-token
    # lifetime in days, how often the signing key rotates (days), and the tokens' `aud`
    # (default: MARKETPLACE_BASE_URL + "/gateway").
    oauth_access_token_ttl: int = Field(default=600, ge=60, le=86400, alias="OAUTH_ACCESS_TOKEN_TTL")
    oauth_refresh_token_ttl_days: int = Field(default=30, ge=1, alias="OAUTH_REFRESH_TOKEN_TTL_DAYS")
    oauth_key_rotation_days: int = Field(default=30, ge=1, alias="OAUTH_KEY_ROTATION_DAYS")
    oauth_audience: str | None = Field(default=None, alias="OAUTH_AUDIENCE")

    # Gateway (issue 3): upstream timeouts in seconds, the shared connection pool, cache safety TTL.
    gateway_connect_timeout: float = Field(default=3.0, gt=0, alias="GATEWAY_CONNECT_TIMEOUT")
    gateway_timeout: float = Field(default=30.0, gt=0, alias="GATEWAY_TIMEOUT")
    gateway_pool_size: int = Field(default=512, ge=1, alias="GATEWAY_POOL_SIZE")
    gateway_cache_ttl: float = Field(default=30.0, ge=0, alias="GATEWAY_CACHE_TTL")
    # How long the gateway waits on Redis before answering 503 (it fails closed).
    gateway_redis_timeout: float = Field(default=1.0, gt=0, alias="GATEWAY_REDIS_TIMEOUT")
    api_key_rotation_overlap_hours: float = Field(default=24, ge=0, alias="API_KEY_ROTATION_OVERLAP_HOURS")
    # Metering: the usage stream flush (batch size, cron cadence, how idle a pending entry must be
    # before another worker reclaims it).
    usage_flush_batch: int = Field(default=1000, ge=1, le=10000, alias="USAGE_FLUSH_BATCH")
    usage_flush_every_seconds: int = Field(default=5, ge=1, le=60, alias="USAGE_FLUSH_EVERY_SECONDS")
    usage_claim_idle_ms: int = Field(default=60000, ge=0, alias="USAGE_CLAIM_IDLE_MS")

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str | None) -> str | None:
        # Accept the plain postgres:// URLs that hosting providers hand out.
        if value and value.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        return value

    @field_validator("payout_second_approval_above", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def retry_schedule(self) -> list[int]:
        return [int(part) for part in self.webhook_retry_schedule.split(",") if part.strip()]

    @property
    def oauth_issuer(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def oauth_token_audience(self) -> str:
        return self.oauth_audience or self.oauth_issuer + "/gateway"

    @property
    def payments_enabled(self) -> bool:
        return bool(self.stripe_secret_key)


@lru_cache
def get_settings() -> Settings:
    return Settings()
