"""The benchmark's targets, measured in one run's results: ratios against the reference round by
round, their spread, and which targets are met, missed or unstable (``bench.report`` renders them)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.config import CONTROL, REFERENCE

OURS = ("ours-local", "ours-redis", "ours-redis-direct")

# A ratio whose rounds disagree by more than this (max - min, over the median) is not a result.
UNSTABLE_SPREAD = 0.10
# The request path's targets against the reference: throughput share, and p99 at most this multiple.
THROUGHPUT_TARGETS = (("ours-redis", 0.9), ("ours-local", 0.95))
P99_LIMIT = 1.25
LOGIN_P50_MS = 60.0


def phases_of(results: dict[str, Any], mode: str) -> dict[int, dict[str, Any]]:
    data = results["modes"].get(mode) or {}
    return {p["connections"]: p for p in data.get("phases", [])}


def ratio_of(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def sql_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.4f}" if abs(value) < 0.1 else f"{value:.2f}"


def ratio_cell(results: dict[str, Any], mode: str, other: str, c: int, key: str = "rps") -> str:
    return fmt(ratio_of(phases_of(results, mode).get(c, {}).get(key), phases_of(results, other).get(c, {}).get(key)))


def concurrencies(results: dict[str, Any]) -> list[int]:
    return list(results["config"]["concurrency"])


def round_ratios(results: dict[str, Any], mode: str, other: str, c: int, key: str = "rps") -> list[float]:
    """``mode``'s figure over ``other``'s, round by round (both measured in the same round)."""

    def by_round(name: str) -> dict[int, float]:
        data = results["modes"].get(name) or {}
        return {p["round"]: p[key] for p in data.get("rounds", []) if p["connections"] == c and p.get(key)}

    mine, theirs = by_round(mode), by_round(other)
    return [mine[r] / theirs[r] for r in sorted(mine) if r in theirs]


def paired_ratios(results: dict[str, Any], name: str, c: int, key: str = "rps") -> list[float]:
    """``name``'s figure over the reference's in each side-by-side phase (``steps.paired_rounds``)."""
    rows = ((results.get("paired") or {}).get("pairs") or {}).get(name) or []
    return [r["mode"][key] / r["reference"][key] for r in rows if r["connections"] == c and r["reference"][key]]


def corrected_ratios(results: dict[str, Any], name: str, c: int, key: str = "rps") -> list[float]:
    """``paired_ratios`` divided, round by round, by the control's (two identical servers read
    1.02-1.05 side by side, the later one ahead: bench/README.md). Assuming every server paired
    with the reference enjoys the same bias is the cautious reading, and the one targets use."""
    rows = ((results.get("paired") or {}).get("pairs") or {}).get(CONTROL) or []
    control = {
        r["round"]: r["mode"][key] / r["reference"][key] for r in rows if r["connections"] == c and r["reference"][key]
    }
    mine = ((results.get("paired") or {}).get("pairs") or {}).get(name) or []
    return [
        r["mode"][key] / r["reference"][key] / control[r["round"]]
        for r in mine
        if r["connections"] == c and r["reference"][key] and control.get(r["round"])
    ]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: list[float]) -> float | None:
    """How far the rounds disagree: (max - min) / median."""
    if len(values) < 2:
        return None
    ordered = sorted(values)
    middle = (
        ordered[len(ordered) // 2]
        if len(ordered) % 2
        else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    )
    return (ordered[-1] - ordered[0]) / middle if middle else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target, at every concurrency, with the measured value.

    ``ok`` is True (met), False (not met) or None (not measured); a ratio whose rounds disagree
    by more than ``UNSTABLE_SPREAD`` has ``unstable`` set and counts as neither met nor missed.
    """
    out: list[dict[str, Any]] = []
    conc = concurrencies(results)

    def add(
        name: str, value: float | None, ok: bool | None, detail: str = "", rounds: list[float] | None = None
    ) -> None:
        width = spread(rounds or [])
        unstable = width is not None and width > UNSTABLE_SPREAD
        if rounds:
            listed = " / ".join(f"{r:.2f}" for r in rounds)
            spread_text = "one round, no spread" if width is None else f"spread {width * 100:.0f} %"
            detail = (detail + "; " if detail else "") + f"rounds {listed}, {spread_text}"
        out.append(
            {"target": name, "value": value, "ok": None if unstable else ok, "unstable": unstable, "detail": detail}
        )

    def ratio_target(mode: str, c: int, key: str, limit: float, at_least: bool) -> None:
        if mode not in results["modes"] or REFERENCE not in results["modes"]:
            return
        # Side by side when the run has those phases (the median of their ratios, divided by the
        # control's round by round when the run has a control); else the interleaved phases' medians.
        rounds = corrected_ratios(results, mode, c, key)
        how = "side by side, over the control"
        if not rounds:
            rounds = paired_ratios(results, mode, c, key)
            how = "side by side"
        value = median(rounds)
        if not rounds:
            rounds = round_ratios(results, mode, REFERENCE, c, key)
            how = "interleaved"
            value = ratio_of(
                phases_of(results, mode).get(c, {}).get(key), phases_of(results, REFERENCE).get(c, {}).get(key)
            )
        what = "req/s" if key == "rps" else "p99"
        sign = ">=" if at_least else "<="
        ok = None if value is None else (value >= limit if at_least else value <= limit)
        add(f"{mode} {what} {sign} {limit}x {REFERENCE} (c={c}, {how})", value, ok, rounds=rounds)

    for mode, share in THROUGHPUT_TARGETS:
        for c in conc:
            ratio_target(mode, c, "rps", share, True)
    for mode, _ in THROUGHPUT_TARGETS:
        for c in conc:
            ratio_target(mode, c, "p99_ms", P99_LIMIT, False)
    background = _sql_background(results)
    for mode in OURS:
        phases = phases_of(results, mode)
        if phases:
            statements = sum(p["sql_statements"] for p in phases.values())
            requests = sum(p.get("served_by_server", p["requests"]) for p in phases.values())
            value = statements / requests if requests else None
            net = None if value is None else value - (background or 0.0)
            add(
                f"{mode} <= 0.001 SQL statements per warm request",
                value,
                None if net is None else net <= 0.001,
                f"{statements} statements in {requests} requests; the anonymous modes, which run no SQL, show "
                f"{sql_text(background)} in the same windows: net {sql_text(net)}",
            )
    counted = (results["modes"].get("ours-redis") or {}).get("counted") or {}
    trips = counted.get("redis_roundtrips_per_req")
    if counted:
        served = max(1, sum(counted["served"].values()))
        by_command = counted["redis_top_by_command"]
        lookups = sum(v for k, v in by_command.items() if k in ("evalsha", "eval")) / served
        leases = by_command.get("set", 0) / served
        add(
            "ours-redis <= 1 Redis command per warm request (client round trips)",
            trips,
            None if trips is None else trips <= 1.0,
            f"per request: {lookups:.3f} EVALSHA (near-cache misses: one script reads entry and dependencies), "
            f"{leases:.3f} SET (near-cache lease renewals, at most one per process every "
            "62 ms), the rest are per-process counters flushed every 2 s; "
            f"{fmt(counted.get('redis_in_lua_per_req'))} more run inside the script",
        )
    login = (results["modes"].get("ours-redis") or {}).get("login")
    if login:
        add(
            f"ours-redis login p50 <= {LOGIN_P50_MS:.0f} ms, unloaded",
            login["p50_ms"],
            login["p50_ms"] <= LOGIN_P50_MS,
            f"{login['requests']} logins one at a time",
        )
    return out


def _sql_background(results: dict[str, Any]) -> float | None:
    """Statements per request counted while the anonymous modes (which run no SQL) were under load."""
    phases = [p for mode in ("bare", "floor") for p in phases_of(results, mode).values()]
    if not phases:
        return None
    served = sum(p.get("served_by_server", p["requests"]) for p in phases)
    return sum(p["sql_statements"] for p in phases) / served if served else None
