"""Markdown report, chart and console summary of one benchmark run (``bench/results/<timestamp>.json``).

``python -m bench.report bench/results/<timestamp>.json`` re-renders the markdown and chart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.config import CONTROL, MODES, REFERENCE
from bench.targets import (
    OURS,
    THROUGHPUT_TARGETS,
    UNSTABLE_SPREAD,
    concurrencies,
    corrected_ratios,
    fmt,
    median,
    paired_ratios,
    phases_of,
    ratio_cell,
    ratio_of,
    round_ratios,
    spread,
    sql_text,
    targets,
)

PEERS = ("naive", "cachalot", "simplejwt", "simplejwt-tuned", "knox", "seed-ttl")
ORDER = tuple(MODES)
# What each mode is, one line each (the report's legend).
DESCRIPTIONS = {
    "bare": "the reference: a DRF APIView (AllowAny, no authentication) returning a median context's bytes, in a "
    "Django project with only SecurityMiddleware and CommonMiddleware",
    "floor": "the same anonymous view and payload inside this project (its settings, middleware and access log): "
    "what the project costs before any authentication",
    "naive": "DRF's TokenAuthentication, then the context with plain ORM calls (the seed's 'before': 7 statements)",
    "cachalot": "naive, with django-cachalot caching every query in the same Redis",
    "simplejwt": "djangorestframework-simplejwt's stock JWTAuthentication (its own user query), then the context with "
    "select_related/prefetch_related, as a DRF app typically builds it",
    "simplejwt-tuned": "simplejwt with one hand-written query (array subqueries) building the context",
    "knox": "django-rest-knox's TokenAuthentication (token row, then user), then the same typical context",
    "seed-ttl": "the design this project grew from: the signed token decoded, the context cached in-process for 15 "
    "minutes by user id (one query on a miss), no invalidation",
    "ours-local": "this project with its in-process cache (no REDIS_URL)",
    "ours-redis": "this project with Redis and its near cache (the default with REDIS_URL)",
    "ours-redis-direct": "this project with Redis, near cache off (one Redis round trip per request)",
}


def markdown(results: dict[str, Any], chart_name: str) -> str:
    conc = concurrencies(results)
    modes = [m for m in ORDER if m in results["modes"]]
    cfg = results["config"]
    lines: list[str] = []
    w = lines.append
    kind = "quick" if results["quick"] else "full"
    w(f"# Benchmark {results['timestamp']} ({kind} run)")
    w("")
    git = results["git"]
    w(
        f"Commit `{git['commit'][:12]}`{' (working tree had uncommitted changes)' if git['dirty'] else ''}; "
        f"{results['machine']['cpus']} CPUs shared by gunicorn ({cfg['workers']} sync workers), wrk "
        f"(`-t{cfg['wrk_threads']}`), PostgreSQL and Redis; load average at start "
        f"{results['machine']['loadavg_at_start']} (a virtual machine whose speed drifts by tens of percent "
        "from minute to minute: absolute numbers are noisy, ratios taken within one run are the figures to read). "
        f"{cfg['duration_s']} s per phase after {cfg['warmup_s']} s of warm-up per mode"
        f"{phase_warmup_text(cfg)}; {cfg['users']} users, tokens "
        f"rotating over {cfg['token_users']} of them; run took {results.get('total_s')} s."
    )
    w("")
    w(f"![throughput and p99 by mode and concurrency, {REFERENCE} as the reference line]({chart_name})")
    w("")
    w("## Modes")
    w("")
    for mode in modes:
        w(f"- **{mode}**: {DESCRIPTIONS.get(mode, '')}")
    w("")
    w("## Load: GET /api/me")
    w("")
    w("| mode | conns | req/s | req/s by round | p50 ms | p99 ms | SQL/req | Redis cmds/req | errors |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in modes:
        for c in conc:
            p = phases_of(results, mode).get(c)
            if not p:
                continue
            by_round = " / ".join(f"{x:.0f}" for x in p.get("rps_by_round", []))
            w(
                f"| {mode} | {c} | {p['rps']:.0f} | {by_round} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                f"{sql_text(p['sql_per_req'])} | {p['redis_per_req']:.3f} | {p['errors_total']} |"
            )
    w("")
    w(
        f"Each row: the median of {cfg.get('rounds', 1)} round(s) of {cfg['duration_s']} s; in each round every "
        "mode runs once per concurrency, one mode at a time, the order rotated between rounds. Errors: non-2xx "
        "responses and socket errors (connect, read, write, timeout) reported by wrk."
    )
    w("")
    w(
        "SQL/req: statements counted by PostgreSQL itself in the bench database during the phase "
        f"({results['sql_count_method']}). Redis cmds/req: `INFO commandstats` delta over the phase, all commands "
        "including those a Lua script runs, server-wide (the modes that use no Redis show the background traffic of "
        "other clients of this shared server)."
    )
    w("")
    w("### Exact per-request counts (a wrk burst at 32 connections with Redis MONITOR on)")
    w("")
    w("| mode | requests served | SQL/req | Redis round trips/req | + commands inside Lua/req | body bytes |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode in modes:
        data = results["modes"][mode]
        cnt = data.get("counted")
        if not cnt:
            continue
        w(
            f"| {mode} | {sum(cnt['served'].values())} | {sql_text(cnt['sql_per_req'])} | "
            f"{fmt(cnt['redis_roundtrips_per_req'], 3)} | {fmt(cnt['redis_in_lua_per_req'], 3)} | "
            f"{data.get('body_bytes')} |"
        )
    w("")
    w(
        "Requests served: counted by gunicorn (a `pre_request` hook), so requests wrk abandoned at the end of a "
        "window still count. Round trips: commands clients sent on the bench Redis database (MONITOR, filtered on "
        "that database, so other tenants of the server do not count); inside Lua: those the scripts ran."
    )
    bodies = results.get("bodies_identical") or {}
    if bodies.get("checked"):
        verdict = "identical" if bodies["identical"] else f"DIFFERENT: {bodies['mismatches']}"
        w(
            f"Bodies of every authenticated mode for the same {bodies['users_compared']} users, compared with "
            f"{bodies['reference']}: {verdict}. Floor body: {bodies['floor_body_bytes']} bytes (median context)."
        )
    w("")
    w("## Ratios")
    w("")
    w(
        f"Throughput against {REFERENCE} (1.00 = as fast as a bare DRF view; `floor` shows what this project's own "
        "settings, middleware and access log cost before any authentication). Each cell: the ratio of the medians, "
        "then each round's own ratio (both modes measured in that round):"
    )
    w("")
    w("| mode | " + " | ".join(f"c={c}" for c in conc) + " |")
    w("| --- |" + " ---: |" * len(conc))
    for mode in modes:
        cells = []
        for c in conc:
            rounds = round_ratios(results, mode, REFERENCE, c)
            cells.append(f"{ratio_cell(results, mode, REFERENCE, c)} ({' / '.join(f'{r:.2f}' for r in rounds)})")
        w(f"| {mode} | " + " | ".join(cells) + " |")
    w("")
    w("Throughput of ours against each peer (and each other):")
    w("")
    w("| ratio | " + " | ".join(f"c={c}" for c in conc) + " |")
    w("| --- |" + " ---: |" * len(conc))
    for ours in OURS:
        for other in (*PEERS, *(o for o in OURS if o != ours)):
            if ours not in modes or other not in modes:
                continue
            cells = [ratio_cell(results, ours, other, c) for c in conc]
            w(f"| {ours} / {other} | " + " | ".join(cells) + " |")
    w("")
    w(f"p99 latency against {REFERENCE} (lower is better):")
    w("")
    w("| mode | " + " | ".join(f"c={c}" for c in conc) + " |")
    w("| --- |" + " ---: |" * len(conc))
    for mode in modes:
        cells = [ratio_cell(results, mode, REFERENCE, c, "p99_ms") for c in conc]
        w(f"| {mode} | " + " | ".join(cells) + " |")
    w("")
    w(paired_section(results))
    w("## Targets")
    w("")
    w(
        f"A ratio whose rounds disagree by more than {UNSTABLE_SPREAD * 100:.0f} % (max - min over the median) is "
        "marked unstable: neither met nor missed. The request path's ratios are taken side by side when the run "
        "has those phases (above), else from the interleaved phases."
    )
    w("")
    w("| target | measured | met |")
    w("| --- | ---: | :---: |")
    for t in targets(results):
        met = "unstable" if t.get("unstable") else ("n/a" if t["ok"] is None else ("yes" if t["ok"] else "**no**"))
        value = sql_text(t["value"]) if "SQL" in t["target"] else fmt(t["value"], 3)
        detail = f" ({t['detail']})" if t["detail"] else ""
        w(f"| {t['target']} | {value}{detail} | {met} |")
    w("")
    layers = results.get("layers") or {}
    if layers:
        w(layer_table(layers))
    w(seed_claims(results))
    w("## Login (production hasher: Argon2id, 19 MiB, t=2, p=1) and refresh")
    w("")
    w("| mode | logins at once | logins | p50 ms | p99 ms | SQL/login | Redis round trips/login |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in ("naive", "ours-redis"):
        login = (results["modes"].get(mode) or {}).get("login")
        if login:
            for at_once, row in ((1, login), (login.get("concurrent", {}).get("concurrency"), login.get("concurrent"))):
                if not row:
                    continue
                w(
                    f"| {mode} | {at_once} | {row['requests']} | {row['p50_ms']} | {row['p99_ms']} | "
                    f"{fmt(row['sql_per_req'])} | {fmt(row['redis_roundtrips_per_req'])} |"
                )
    refresh = (results["modes"].get("ours-redis") or {}).get("refresh")
    if refresh:
        w("")
        w("A chain of refreshes of one session (`POST /api/auth/refresh`: rotation, no password hashing):")
        w("")
        unit = "SQL statements" if refresh.get("sql_counted_as") == "statements" else "SQL transactions"
        w(f"| mode | refreshes | p50 ms | p99 ms | {unit}/refresh | Redis round trips/refresh |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        w(
            f"| ours-redis | {refresh['requests']} | {refresh['p50_ms']} | {refresh['p99_ms']} | "
            f"{fmt(refresh['sql_per_req'])} | {fmt(refresh['redis_roundtrips_per_req'])} |"
        )
    w("")
    cold = results.get("cold") or {}
    if cold:
        w("## Cold GET /api/me (ours-redis, first request of a user never cached)")
        w("")
        w(
            "| users in database | requests | cold p50 ms | cold p99 ms | SQL/req | Redis round trips/req "
            "| warm again p50 ms |"
        )
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for level, data in cold.items():
            c, again = data["cold"], data["warm_again"]
            w(
                f"| {int(level):,} | {c['requests']} | {c['p50_ms']} | {c['p99_ms']} | {fmt(c['sql_per_req'])} | "
                f"{fmt(c['redis_roundtrips_per_req'])} | {again['p50_ms']} |"
            )
        w("")
    memory = results.get("memory") or {}
    if memory.get("entries"):
        mu, pb = memory["memory_usage_bytes"], memory["payload_bytes"]
        w("## Bytes per cached context (Redis)")
        w("")
        w(
            f"`MEMORY USAGE {memory['key_example']}` over {memory['entries']} entries: mean {mu['mean']} bytes "
            f"(min {mu['min']}, max {mu['max']}); payload field {pb['mean']} bytes on average. The dependency keys "
            "are shared (one per user, organization, role, plus three global keys)."
        )
        w("")
    w("## Setup")
    w("")
    w("| | |")
    w("| --- | --- |")
    for key, value in results["versions"].items():
        w(f"| {key} | {value} |")
    w(f"| context JSON bytes (min/median/max) | {results.get('context_bytes')} |")
    w("")
    return "\n".join(lines) + "\n"


def paired_section(results: dict[str, Any]) -> str:
    """The side-by-side phases (``steps.paired_rounds``): each pair's ratios round by round."""
    paired = results.get("paired")
    if not paired:
        return ""
    conc = concurrencies(results)
    lines = [
        "## Side by side: the targets' ratios",
        "",
        f"The reference and one mode under load at the same time, both servers pinned to CPU "
        f"{', '.join(map(str, paired['server_cpus']))} and each wrk to CPU {', '.join(map(str, paired['wrk_cpus']))}, "
        f"{results['config']['duration_s']} s per phase after {results['config']['phase_warmup_s']} s uncounted, "
        "the pairs' order rotated between rounds: both sides of a ratio share the same seconds of the machine, "
        f"whose speed drifts between phases. `{CONTROL}` is {REFERENCE} paired with a second {REFERENCE} server: "
        "what the method itself reads between two identical servers; the later-started one reads a few percent "
        "ahead whichever wrk starts first, so each mode's ratios are also divided, round by round, by the control's "
        "(*over the control*), and the targets are judged on those. Each cell: the median of the rounds' ratios, "
        "then each round's, then their spread.",
        "",
        "| pair | figure | " + " | ".join(f"c={c}" for c in conc) + " |",
        "| --- | --- |" + " ---: |" * len(conc),
    ]
    for name in paired["pairs"]:
        rows = [("rps", "req/s", paired_ratios), ("p99_ms", "p99", paired_ratios)]
        if name != CONTROL and CONTROL in paired["pairs"]:
            rows += [
                ("rps", "req/s over the control", corrected_ratios),
                ("p99_ms", "p99 over the control", corrected_ratios),
            ]
        for key, label, ratios_of in rows:
            cells = []
            for c in conc:
                ratios = ratios_of(results, name, c, key)
                width = spread(ratios)
                cells.append(
                    f"{fmt(median(ratios))} ({' / '.join(f'{r:.2f}' for r in ratios)}; "
                    f"{'n/a' if width is None else f'{width * 100:.0f} %'})"
                )
            lines.append(f"| {name} / {REFERENCE} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def layer_table(layers: dict[str, Any]) -> str:
    """CPU µs per request in each layer of the request path, one column per mode (bench.layers)."""
    modes = [m for m in ORDER if m in layers]
    # Rows in request order: the mode with the most layers first, the others' extra ones after.
    names: list[str] = []
    for mode in sorted(modes, key=lambda m: -len(layers[m]["rows"])):
        for name, _ in layers[mode]["rows"]:
            if name not in names:
                names.append(name)
    lines = [
        "## Where a request's time goes (CPU µs per request, one process, no network)",
        "",
        "`python -m bench.layers`: the mode's WSGI application with a probe before every middleware and the view; "
        "each layer's own time, the probes' cost taken off. The network, gunicorn and wrk come on top (about as "
        "much again per request on this machine).",
        "",
        "| layer | " + " | ".join(modes) + " |",
        "| --- |" + " ---: |" * len(modes),
    ]
    for name in names:
        cells = []
        for mode in modes:
            value = dict((n, v) for n, v in layers[mode]["rows"]).get(name)
            cells.append("" if value is None else f"{value:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def seed_claims(results: dict[str, Any]) -> str:
    conc = concurrencies(results)
    c = 32 if 32 in conc else conc[0]
    naive = results["modes"].get("naive") or {}
    ours = results["modes"].get("ours-redis") or {}
    nl, ol = naive.get("login") or {}, ours.get("login") or {}
    n_phase = phases_of(results, "naive").get(c, {})
    o_phase = phases_of(results, "ours-redis").get(c, {})
    cach = phases_of(results, "cachalot").get(c, {})
    rows = [
        (
            "login latency",
            "500 ms -> 50-100 ms",
            f"{nl.get('p50_ms', 'n/a')} ms p50 (p99 {nl.get('p99_ms', 'n/a')})",
            f"{ol.get('p50_ms', 'n/a')} ms p50 (p99 {ol.get('p99_ms', 'n/a')})",
        ),
        ("DB calls per login", "4-5 -> 0.1", fmt(nl.get("sql_per_req")), fmt(ol.get("sql_per_req"))),
        (
            "DB calls per authenticated request",
            "4-5 -> 0.1",
            sql_text(n_phase.get("sql_per_req")),
            sql_text(o_phase.get("sql_per_req")),
        ),
        (
            f"req/s with Redis (c={c})",
            "1000-2000",
            f"{n_phase.get('rps', 0):.0f} (naive), {cach.get('rps', 0):.0f} (cachalot)",
            f"{o_phase.get('rps', 0):.0f}",
        ),
    ]
    lines = [
        "## The seed system's before/after, redone with these figures",
        "",
        "| | seed's claim | before (naive, measured) | after (ours-redis, measured) |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c_} | {d} |" for a, b, c_, d in rows]
    lines += [
        "",
        "Login is dominated by the production hasher (Argon2id at OWASP's parameters), which is not weakened.",
        "",
    ]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    """Throughput as a share of the reference (its line at 1.0, the targets dotted) and p99 (the
    reference's dashed), by mode and concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = concurrencies(results)
    modes = [m for m in ORDER if m in results["modes"]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    width = 0.8 / max(1, len(conc))
    for index, c in enumerate(conc):
        xs = [i + (index - (len(conc) - 1) / 2) * width for i in range(len(modes))]
        shares = [
            ratio_of(phases_of(results, m).get(c, {}).get("rps"), phases_of(results, REFERENCE).get(c, {}).get("rps"))
            for m in modes
        ]
        p99 = [phases_of(results, m).get(c, {}).get("p99_ms", 0) for m in modes]
        bars = axes[0].bar(xs, [v or 0 for v in shares], width, label=f"{c} connections")
        axes[1].bar(xs, p99, width, label=f"{c} connections", color=bars.patches[0].get_facecolor())
        reference_p99 = phases_of(results, REFERENCE).get(c, {}).get("p99_ms")
        if reference_p99:
            axes[1].axhline(reference_p99, linestyle="--", linewidth=0.8, color=bars.patches[0].get_facecolor())
    axes[0].axhline(1.0, color="black", linewidth=1.2, label=f"{REFERENCE} = 1.0")
    for mode, share in THROUGHPUT_TARGETS:
        axes[0].axhline(share, color="grey", linestyle=":", linewidth=1, label=f"target for {mode}: {share}")
    axes[0].set_title(f"GET /api/me: throughput / {REFERENCE}'s")
    axes[0].set_ylabel(f"share of {REFERENCE}'s requests/s")
    axes[1].set_title(f"GET /api/me: p99 latency (dashed: {REFERENCE}'s)")
    axes[1].set_ylabel("ms (log scale)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(modes, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"authctx benchmark {results['timestamp']} ({'quick' if results['quick'] else 'full'})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(results: dict[str, Any]) -> str:
    conc = concurrencies(results)
    out = ["mode               conns   req/s   p50ms   p99ms   sql/req  redis/req  errors"]
    for mode in [m for m in ORDER if m in results["modes"]]:
        for c in conc:
            p = phases_of(results, mode).get(c)
            if p:
                out.append(
                    f"{mode:<18} {c:>5} {p['rps']:>7.0f} {p['p50_ms']:>7.2f} {p['p99_ms']:>7.2f} "
                    f"{p['sql_per_req']:>9.4f} {p['redis_per_req']:>10.3f} {p['errors_total']:>7}"
                )
    out.append("")
    for t in targets(results):
        met = "UNSTABLE" if t.get("unstable") else ("n/a" if t["ok"] is None else ("MET" if t["ok"] else "NOT MET"))
        out.append(f"{met:>8}  {t['target']}: {fmt(t['value'], 4)} {t['detail']}")
    return "\n".join(out)


def main() -> None:
    """``python -m bench.report RESULTS.json [--latest]``: re-render its markdown and chart (and latest.*)."""
    import shutil

    path = Path(sys.argv[1])
    results = json.loads(path.read_text())
    png = path.with_suffix(".png")
    chart(results, png)
    path.with_suffix(".md").write_text(markdown(results, png.name))
    if "--latest" in sys.argv[2:]:
        shutil.copyfile(png, path.parent / "latest.png")
        (path.parent / "latest.md").write_text(markdown(results, "latest.png"))
    print(summary(results))


def phase_warmup_text(cfg: dict[str, Any]) -> str:
    seconds = cfg.get("phase_warmup_s", 0)  # runs before it had none
    return f" and {seconds} s of uncounted load before each phase" if seconds else ""


if __name__ == "__main__":
    main()
