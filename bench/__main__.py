"""`python -m bench [--quick] [--contacts N] [--samples N] [--only FIGURE ...]`: runs the figures
on a stack of its own, prints the table and writes it with a description of the machine."""

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil
from sqlalchemy import text

from bench.figures import FIGURES, OPT_IN
from bench.harness import Bench, Options, Row, running_bench
from core.temporal import temporal_cli

HERE = Path(__file__).parent
QUICK = {"contacts": 300, "samples": 100}


def parse(argv: list[str]) -> tuple[Options, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help=f"a small run to check the bench itself ({QUICK})")
    parser.add_argument("--contacts", type=int, help="contacts in the campaign (default 10,000)")
    parser.add_argument("--samples", type=int, help="requests per latency figure (default 1,000)")
    parser.add_argument("--concurrency", type=int, default=Options.concurrency,
                        help="customers in flight for the latency figures")
    parser.add_argument("--temporal-dir", type=Path,
                        help="keep the dev server's SQLite database in a file in this directory "
                             "(e.g. /dev/shm), not in memory: in a 100,000-contact run its "
                             "in-memory database crashed the server (SIGSEGV in SQLite)")
    parser.add_argument("--http-processes", type=int, default=Options.http_processes,
                        help="uvicorn processes each for our API and the bare app (default: one "
                             "per core, as deployed)")
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), default=(),
                        help="run only these figures")
    parser.add_argument("--output", type=Path,
                        help="where to write the results (default bench/results.md; "
                             "bench/results/quick.md with --quick)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {}
    options = Options(
        contacts=args.contacts or defaults.get("contacts", Options.contacts),
        samples=args.samples or defaults.get("samples", Options.samples),
        concurrency=args.concurrency, only=tuple(args.only), temporal_dir=args.temporal_dir,
        http_processes=args.http_processes)
    if options.samples > options.contacts:
        parser.error("--samples cannot exceed --contacts: each sample is a contact's journey")
    output = args.output or (HERE / "results" / "quick.md" if args.quick else HERE / "results.md")
    return options, output


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def machine(bench: Bench) -> list[tuple[str, str]]:
    cli = subprocess.run([temporal_cli(), "--version"], capture_output=True, text=True).stdout
    async with bench.sessions() as session:
        postgres = await session.scalar(text("SHOW server_version"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    where = bench.options.temporal_dir
    temporal = f"SQLite file in {where}" if where else "in memory"
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} cores"),
        ("RAM", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("temporalio (SDK)", version("temporalio")),
        ("temporal CLI / dev server", cli.strip().replace("\n", "; ")),
        ("PostgreSQL", str(postgres)),
        # The machine may be shared: a high load means noisy figures (the ratios less so).
        ("load average at start (1, 5, 15 min)", load),
        ("layout", "everything on this one machine: Temporal dev server "
                   f"({temporal}), PostgreSQL, "
                   f"our API and the bare app (uvicorn, {bench.options.http_processes} "
                   "processes each), our workers (journeys, launches) and the bare "
                   "worker (each its own process), the load generator and SMTP sink"),
    ]


def table(rows: list[Row]) -> list[str]:
    lines = ["| figure | ours | raw baseline | ratio | target | met |",
             "| --- | ---: | ---: | ---: | --- | :---: |"]
    for r in rows:
        met = r.target.met(r) if r.target else None
        lines.append(
            f"| {r.figure} | {r.ours:,.1f} {r.unit} "
            f"| {'' if r.baseline is None else f'{r.baseline:,.1f} {r.unit}'} ({r.baseline_name}) "
            f"| {'' if r.ratio is None else f'{r.ratio:.2f}×'} "
            f"| {r.target or ''} | {'' if met is None else ('yes' if met else '**no**')} |")
    return lines


async def run(options: Options, output: Path) -> int:
    rows: list[Row] = []
    started = time.monotonic()
    async with running_bench(options) as bench:
        described = await machine(bench)
        for name, measure in FIGURES.items():
            if name not in options.only if options.only else name in OPT_IN:
                continue
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            figure_rows = await measure(bench)
            rows += figure_rows
            print("\n".join(table(figure_rows)[2:]), file=sys.stderr, flush=True)
    notes = [f"{r.figure}: {r.note}" for r in rows if r.note]
    report = [
        "# Benchmark results", "",
        f"`{' '.join(['python -m bench', *sys.argv[1:]])}`: {options.contacts:,} contacts, "
        f"{options.samples:,} requests per latency figure, {options.concurrency} concurrent "
        f"clients; took {time.monotonic() - started:.0f}s.", "",
        *table(rows), "",
        "## Machine", "",
        *[f"- {k}: {v}" for k, v in described],
        f"- load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}", "",
        "## Notes", "",
        *[f"- {n}" for n in notes],
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(report) + "\n")
    print("\n".join(table(rows)))
    print(f"\nwritten to {output}")
    return 0


def main() -> int:
    options, output = parse(sys.argv[1:])
    return asyncio.run(run(options, output))


if __name__ == "__main__":
    sys.exit(main())
