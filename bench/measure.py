"""What the benchmarks read off the running processes and the broker: CPU time and memory from
/proc, Prometheus samples from /metrics pages, how many records a topic holds, and the latency
figures wrk reports."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---- /proc -----------------------------------------------------------------------------------


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A memory figure of /proc/PID/status in KiB (VmRSS now, VmHWM its peak); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pids: Iterable[int], field_name: str = "VmRSS") -> float:
    """rss_kib summed over processes, in MiB."""
    return sum(rss_kib(p, field_name) for p in pids) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct children of a process (the edge's per-process workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


@dataclass
class CpuMeter:
    """CPU seconds used by groups of processes (by role) from start() on, and by this process's
    children that have finished meanwhile (the load generator) under `children_role`."""

    groups: dict[str, list[int]]
    children_role: str = "wrk"
    _start: dict[str, float] = field(default_factory=dict)
    _children: float = 0.0

    @staticmethod
    def _children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _now(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(p) for p in pids) for role, pids in self.groups.items()}

    @classmethod
    def start(cls, groups: dict[str, list[int]], children_role: str = "wrk") -> CpuMeter:
        meter = cls(groups, children_role)
        meter._start = meter._now()
        meter._children = cls._children_cpu()
        return meter

    def cores_used(self, wall_s: float) -> dict[str, float]:
        """Cores busy per role since start() (2.0 = both cores of a 2-core box)."""
        cpu = {role: sec - self._start[role] for role, sec in self._now().items()}
        cpu[self.children_role] = self._children_cpu() - self._children
        return {role: round(sec / wall_s, 2) for role, sec in cpu.items()}


# ---- /metrics and topics ---------------------------------------------------------------------

def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of one metric in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metrics_excerpt(text: str, prefix: str) -> list[str]:
    """The first 40 samples of a /metrics page whose names start with `prefix`, no buckets."""
    return [line for line in text.splitlines()
            if line.startswith(prefix) and "_bucket" not in line][:40]


def topic_end_total(bootstrap: str, topic: str) -> int:
    """How many records `topic` has had: its end offsets, summed over its partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from app.kafka_clients import env_client_kwargs
    from app.ops.tail import topic_partitions

    async def ends() -> int:
        consumer = AIOKafkaConsumer(**env_client_kwargs(bootstrap, group_id=None))
        await consumer.start()
        try:
            parts = await topic_partitions(consumer, topic)
            offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return sum(offsets.values())
        finally:
            await consumer.stop()

    return asyncio.run(ends())


# ---- latency ---------------------------------------------------------------------------------

def latency(run: dict[str, Any]) -> str:
    """p50 and p99 of a wrk run (bench/submit.lua reports microseconds), for the log."""
    return (f"p50 {run['latency_us']['p50'] / 1000:.1f} ms  "
            f"p99 {run['latency_us']['p99'] / 1000:.1f} ms")
