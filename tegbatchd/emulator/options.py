"""Every knob of the emulator in one immutable value, shared by the store, the answers and the server."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400.0
MAX_BODY_BYTES = 256 * 1024 * 1024  # a batch create
MAX_MESSAGES_BODY_BYTES = 32 * 1024 * 1024  # a /v1/messages request
API_VERSIONS = ("2023-06-01", "2026-10-21")  # accepted anthropic-version values (the Versions page)
CACHE_MODELS = ("realistic", "optimistic")
SPEND_LIMITS = ("workspace", "tier")
MAX_REQUESTS = 100_000

# The nine types of the SDK's ErrorObject union: the only ones valid inside an `errored` result.
ERROR_TYPES = (
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
)


@dataclass(frozen=True)
class Options:
    api_key: str | None = None
    process_seconds: float = 3.0
    expiry_seconds: float = DAY
    retention_seconds: float = 29 * DAY
    cancel_seconds: float = 1.0
    cancel_finish_rate: float = 0.0
    answer_bytes: int = 800
    max_tokens_rate: float = 0.0
    error_rate: float = 0.0
    error_type: str | None = None
    expire_rate: float = 0.0
    seed: int = 0
    seeded_ids: bool = False  # --seed given: batch ids come from the seed and creation order
    fault_rate: float = 0.0
    fault_retry_after: str = "0.01"
    drop_results_after: int | None = None
    drop_results_times: int | None = None
    replay_results: tuple[str, ...] = ()
    replay_any: str | None = None
    unclear_create: str | None = None
    unclear_create_count: int = 1
    stall_seconds: float = 30.0
    shuffle_results: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    max_messages_body_bytes: int = MAX_MESSAGES_BODY_BYTES
    models_file: str | None = None  # None: the shipped models.json
    today: str | None = None  # YYYY-MM-DD the catalogue's lifecycle is read at (None: the emulated clock's day)
    cache_model: str = "realistic"
    retrieve_404_seconds: float = 0.0  # a new batch answers 404 on retrieve this long after its create
    list_lag_seconds: float = 0.0  # a new batch is missing from list pages this long
    credit_exhausted: bool = False  # every request errored: credit balance too low (messages: 400)
    spend_limit: str | None = None  # creates refused: "workspace" (400) or "tier" (429, no retry-after)
    state_file: str | None = None
    verbose: bool = False
