"""Guards against abusive clients: a per-API-key rate limit and a bounded body read.

The rate limit is an in-process token bucket per key id. With several edge processes behind a
load balancer each process keeps its own buckets, so a key's effective limit is the per-process
limit times the number of processes it is spread over (README, "Rate limits").
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from app.contracts.api_keys import ApiKey
from app.edge.errors import ApiError


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by API key id: a key's own limit and burst if it has them (set with
    `python -m app keys set-limit`), else the defaults (VOIX_RATE_LIMIT_PER_S / _BURST).

    Keys are authenticated before they reach a bucket, so the number of buckets is bounded by
    the number of keys (an attacker cannot grow it with made-up ids)."""

    def __init__(self, rate_per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key_id: str, rate_per_s: float | None = None,
                burst: int | None = None) -> float:
        """Take one token; return 0 if allowed, else the seconds until a token is available."""
        rate = rate_per_s or self.rate_per_s
        size = float(burst or self.burst)
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(size, now)
        bucket.tokens = min(size, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def check(self, key: ApiKey) -> None:
        """Raise the 429 if the key is over its limit."""
        rate = key.rate_limit_per_s or self.rate_per_s
        burst = key.rate_limit_burst or self.burst
        wait_s = self.acquire(key.key_id, rate, burst)
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            raise ApiError(429, "rate_limited",
                           f"Too many requests for this API key (limit {rate:g}/s, "
                           f"burst {burst}); retry after {retry_after} s.",
                           headers={"Retry-After": str(retry_after)})


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole request body, or 408 if the client does not send it within `timeout_s`.

    aiohttp has no per-request body timeout: a client that announces a body and sends it a
    byte at a time would otherwise hold a connection and a task for as long as it likes."""
    if request.content.is_eof():  # the whole body is here already: nothing to wait for
        return await request.read()  # client_max_size (413) applies here too
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()  # aiohttp enforces client_max_size here (413)
    except TimeoutError:
        raise ApiError(408, "request_timeout",
                       f"The request body did not arrive within {timeout_s:g} s.",
                       headers={"Connection": "close"}) from None
