"""A load driver that behaves like a careful carrier and keeps a ledger of every answer.

Each call is two beats (a start beat, then a finishing beat with a recordingUrl); a share of
beats is sent again after their 202, as a client does when the answer got lost. Every attempt is
recorded as ok (2xx), failed (4xx other than 429) or unknown (5xx, timeout, connection error).
An unknown is retried with the same body, honouring Retry-After, until it is ok or failed or the
retry deadline passes, like a real client: callId makes retries safe.

The ledger says which finishing beats were acknowledged; tests/faults/checker.py compares it with
what landed on the jobs topic. Also usable on its own as a load generator:

    VOIX_LOADGEN_KEYS="vx_..._...=<teamId>" python -m tests.faults.loadgen \\
        --url http://127.0.0.1:8080 --calls 1000 --rate 100 --out ledger.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

START_TIME = "2026-06-16T09:05:35.000Z"
OK, FAILED, UNKNOWN = "ok", "failed", "unknown"


@dataclass(frozen=True, slots=True)
class TeamKey:
    key: str
    team_id: str


@dataclass(slots=True)
class Attempt:
    call_id: str
    team_id: str
    beat: str  # "start" | "finish"
    status: int | None  # None: no HTTP answer (timeout, connection error)
    outcome: str  # ok | failed | unknown
    sent_at: float  # wall clock, seconds
    took_s: float
    error: str = ""


@dataclass
class Ledger:
    attempts: list[Attempt] = field(default_factory=list)
    job_ids: dict[str, str] = field(default_factory=dict)  # "team/call" -> jobId from the 202
    calls: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0

    def acknowledged(self) -> dict[tuple[str, str], str]:
        """(teamId, callId) -> jobId for every finishing beat answered with a 2xx."""
        pairs = ((key.partition("/"), job_id) for key, job_id in self.job_ids.items())
        return {(team, call): job_id for (team, _, call), job_id in pairs}

    def summary(self) -> dict[str, Any]:
        by_status = Counter(str(a.status) if a.status is not None else "no answer"
                            for a in self.attempts)
        return {"calls": self.calls, "requests": len(self.attempts),
                "ok": sum(a.outcome == OK for a in self.attempts),
                "failed": sum(a.outcome == FAILED for a in self.attempts),
                "unknown": sum(a.outcome == UNKNOWN for a in self.attempts),
                "acknowledged_finishing_beats": len(self.job_ids),
                "statuses": dict(sorted(by_status.items())),
                "slowest_s": round(max((a.took_s for a in self.attempts), default=0.0), 2),
                "duration_s": round(self.ended_at - self.started_at, 2)}

    def dump(self, path: Path) -> None:
        path.write_bytes(orjson.dumps({"calls": self.calls, "started_at": self.started_at,
                                       "ended_at": self.ended_at, "job_ids": self.job_ids,
                                       "attempts": [asdict(a) for a in self.attempts]}))

    @classmethod
    def load(cls, path: Path) -> Ledger:
        doc = orjson.loads(path.read_bytes())
        return cls(attempts=[Attempt(**a) for a in doc["attempts"]], job_ids=doc["job_ids"],
                   calls=doc["calls"], started_at=doc["started_at"], ended_at=doc["ended_at"])


@dataclass
class LoadDriver:
    url: str
    keys: list[TeamKey]
    calls: int
    rate_per_s: float = 50.0  # calls started per second
    retry_share: float = 0.1  # share of beats sent again after their 202
    concurrency: int = 32
    request_timeout_s: float = 15.0
    retry_deadline_s: float = 120.0
    seed: int = 0
    progress: bool = False
    ledger: Ledger = field(default_factory=Ledger)
    finished_calls: int = 0

    async def run(self) -> Ledger:
        rng = random.Random(self.seed)
        plan = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                 self.keys[i % len(self.keys)], rng.random() < self.retry_share,
                 rng.random() < self.retry_share) for i in range(self.calls)]
        self.ledger = Ledger(calls=self.calls, started_at=time.time())
        limit = asyncio.Semaphore(self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        bar = _progress(self.calls) if self.progress else None
        async with aiohttp.ClientSession(timeout=timeout) as http:
            loop = asyncio.get_running_loop()
            t0 = loop.time()

            async def one(i: int) -> None:
                await asyncio.sleep(max(0.0, t0 + i / self.rate_per_s - loop.time()))
                async with limit:
                    await self._call(http, *plan[i])
                self.finished_calls += 1
                if bar is not None:
                    bar.update(1)

            try:
                await asyncio.gather(*(one(i) for i in range(self.calls)))
            finally:
                if bar is not None:
                    bar.close()
        self.ledger.ended_at = time.time()
        return self.ledger

    async def _call(self, http: aiohttp.ClientSession, call_id: str, key: TeamKey,
                    resend_start: bool, resend_finish: bool) -> None:
        start = {"callId": call_id, "from": "+31612345678", "to": "+31201234567",
                 "startTime": START_TIME, "outgoing": False}
        finish = {**start, "duration": 42,
                  "recordingUrl": f"https://recordings.example.com/{call_id}.wav?sig=s3cr3t"}
        for beat, body, resend in (("start", start, resend_start),
                                   ("finish", finish, resend_finish)):
            for _ in range(2 if resend else 1):
                answer = await self._send(http, key, beat, body)
                if answer is not None and beat == "finish" and "jobId" in answer:
                    self.ledger.job_ids[f"{key.team_id}/{call_id}"] = answer["jobId"]

    async def _send(self, http: aiohttp.ClientSession, key: TeamKey, beat: str,
                    body: dict[str, Any]) -> dict[str, Any] | None:
        """Send until ok or failed (or the retry deadline); the 2xx body, or None."""
        deadline = time.monotonic() + self.retry_deadline_s
        delay = 0.2
        while True:
            sent_at, started = time.time(), time.monotonic()
            status: int | None = None
            error, retry_after, payload = "", None, None
            try:
                async with http.post(f"{self.url}/submit", json=body,
                                     headers={"Authorization": f"Bearer {key.key}"}) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    payload = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error = type(exc).__name__
            took = time.monotonic() - started
            outcome = (OK if status is not None and 200 <= status < 300 else
                       FAILED if status is not None and 400 <= status < 500 and status != 429
                       else UNKNOWN)
            self.ledger.attempts.append(Attempt(body["callId"], key.team_id, beat, status,
                                                outcome, sent_at, round(took, 4), error))
            if outcome == OK:
                return payload if isinstance(payload, dict) else {}
            if outcome == FAILED or time.monotonic() > deadline:
                return None
            wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
            await asyncio.sleep(min(wait, 5.0) * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="call", file=sys.stderr)


def keys_from_env(raw: str) -> list[TeamKey]:
    keys = []
    for item in raw.split(","):
        key, _, team = item.strip().partition("=")
        if not key or not team:
            raise SystemExit("VOIX_LOADGEN_KEYS must be key=teamId[,key=teamId...]")
        keys.append(TeamKey(key, team))
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.loadgen", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="API keys come from VOIX_LOADGEN_KEYS (key=teamId,...), never from the command "
               "line, so they stay out of shell history and process lists.")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the edge's base URL")
    parser.add_argument("--calls", type=int, default=1000, help="calls (two beats each)")
    parser.add_argument("--rate", type=float, default=100.0, help="calls started per second")
    parser.add_argument("--retry-share", type=float, default=0.1,
                        help="share of beats sent again after their 202 (default 0.1)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight at most")
    parser.add_argument("--timeout", type=float, default=15.0, help="per-request timeout, s")
    parser.add_argument("--seed", type=int, default=0, help="seed for callIds and retries")
    parser.add_argument("--out", type=Path, help="write the ledger (JSON) here")
    args = parser.parse_args(argv)
    keys = keys_from_env(os.environ.get("VOIX_LOADGEN_KEYS", ""))
    driver = LoadDriver(args.url, keys, args.calls, rate_per_s=args.rate,
                        retry_share=args.retry_share, concurrency=args.concurrency,
                        request_timeout_s=args.timeout, seed=args.seed, progress=True)
    ledger = asyncio.run(driver.run())
    if args.out:
        ledger.dump(args.out)
    print(orjson.dumps(ledger.summary(), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
