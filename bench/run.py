"""The benchmark: ``python -m bench.run [--quick] [--workers N]`` (``scripts/bench.sh`` sets it up).

One run measures, on this machine, every mode of ``bench.settings_peers`` with real gunicorn
sync workers, PostgreSQL and Redis, one mode at a time, and writes
``bench/results/<timestamp>.{json,md,png}`` plus ``latest.md`` / ``latest.png``.
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import json
import shutil
import time

from bench import report
from bench.benchrun import BenchRun
from bench.config import RESULTS, ROOT, log, parse_args
from bench.server import Server, mode_env
from bench.steps import finish_mode, layer_costs, paired_rounds, prepare_mode, run_rounds, setup_database


def main(argv: list[str] | None = None) -> int:
    run = BenchRun.start(parse_args(argv, __doc__))
    cfg, run_dir = run.cfg, run.run_dir
    run.meta = setup_database(cfg, run.pg, run.probe, run.env, run_dir)
    run.setup_s = round(time.perf_counter() - run.started, 1)

    try:
        for index, mode in enumerate(cfg.modes):
            run.servers[mode] = Server(cfg, mode, mode_env(cfg, run.env, mode, run_dir), run_dir, cfg.port + index)
            run.modes[mode] = prepare_mode(cfg, run.servers[mode], run_dir)
        run_rounds(run)
        paired_rounds(run)
        for server in run.servers.values():
            finish_mode(run, server)
            server.stop()
        run.layers = layer_costs(cfg, run_dir)
    finally:
        for server in run.servers.values():
            server.stop()
        run.total_s = round(time.perf_counter() - run.started, 1)
    results = run.results()

    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{run.stamp}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    png = RESULTS / f"{run.stamp}.png"
    report.chart(results, png)
    md = RESULTS / f"{run.stamp}.md"
    md.write_text(report.markdown(results, png.name))
    shutil.copyfile(png, RESULTS / "latest.png")
    (RESULTS / "latest.md").write_text(report.markdown(results, "latest.png"))
    log(f"wrote {json_path.relative_to(ROOT)}, {md.relative_to(ROOT)}, {png.relative_to(ROOT)} and latest.*")
    print(report.summary(results))
    if cfg.keep_logs:
        log(f"run directory kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    log(f"done in {run.total_s} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
