"""The benchmark runner: ``python -m bench.run`` or ``python bench/run.py``.

Discovers ``bench/bench_*.py`` modules, runs each module's ``run(ctx)``, prints one table of
figures (value, same-run baseline, ratio, target, verdict) and writes them as JSON. It
reports, it does not gate: the exit code is 0 when targets are missed (they print as
MISSED) and 1 only when a benchmark module itself crashed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Context, Figure, fmt
from bench.loadgen import uses_uvloop

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
COLUMNS = ("benchmark", "figure", "value", "baseline", "ratio", "target", "verdict")


def discover() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


def _row(fig: Figure) -> tuple[str, ...]:
    baseline = f"{fmt(fig.baseline_value, fig.unit)} ({fig.baseline_name})"
    ratio = "—" if fig.ratio is None else f"{fig.ratio:.2f}×"
    return (fig.bench, fig.name, fmt(fig.value, fig.unit), baseline, ratio,
            fig.target or "—", fig.verdict)


def render(figures: list[Figure]) -> str:
    rows = [COLUMNS, *(_row(f) for f in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  [{f.bench}] {f.name}: {f.notes}" for f in figures if f.notes]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "uvloop_loadgen": uses_uvloop()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="NAME",
                        help="run only modules (or parts, e.g. openings.ready) containing NAME")
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts for a CI smoke run (still real measurements)")
    default_json = DEFAULT_JSON.relative_to(ROOT)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the figures (default {default_json})")
    args = parser.parse_args(argv)

    ctx = Context(quick=args.quick)
    modules = discover()
    if args.only is not None:
        # A module whose name matches runs whole; otherwise every module runs only the
        # parts whose ``module.part`` name matches (``--only ready``, ``openings.ready``).
        by_name = [m for m in modules if args.only in m]
        modules = by_name or modules
        ctx.only = None if by_name else args.only
    figures: list[Figure] = []
    crashed: dict[str, str] = {}
    started = time.perf_counter()
    for name in modules:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            figures += module.run(ctx)
        except Exception:
            crashed[name] = traceback.format_exc()
            print(crashed[name], file=sys.stderr, flush=True)
    took = time.perf_counter() - started

    print()
    if not figures and args.only is not None:
        print(f"nothing matched --only {args.only!r}; modules: {', '.join(discover())}")
    print(render(figures))
    missed = [f for f in figures if f.verdict == "MISSED"]
    skipped = [f for f in figures if f.verdict == "SKIPPED"]
    print()
    print(f"{len(figures)} figures in {took:.1f} s on {os.cpu_count()} cores: "
          f"{len(missed)} MISSED, {len(skipped)} SKIPPED, {len(crashed)} crashed")
    for fig in missed:
        print(f"MISSED: [{fig.bench}] {fig.name} = {fmt(fig.value, fig.unit)}, "
              f"target {fig.target}")
    for name in crashed:
        print(f"CRASHED: {name} (traceback above)")

    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "only": args.only, "machine": machine(),
        "duration_s": round(took, 2),
        "figures": [dict(dataclasses.asdict(f), verdict=f.verdict) for f in figures],
        "crashed": crashed, "log": ctx.log_lines,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
