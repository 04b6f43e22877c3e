"""The ``bench`` command of keyload-host (registered through the ``keyload_host.commands`` entry
point): run the benchmark on its own simulated station, print its table, write the figures."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for performance.json and performance.png (the plot needs matplotlib).",
)
@click.option("--quick", is_flag=True, help="A smoke run of a few cards: seconds, not minutes.")
@click.option(
    "--audit-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Where personalize writes its audit log (default: /dev/shm, so that the disk's fsync "
    "latency stays out of the figures; give a disk directory to include it).",
)
def bench(out: Path, quick: bool, audit_dir: Path | None) -> None:
    """Benchmark personalize on the simulated station.

    Starts its own station (stop any running one first) and measures APDU round trips (against
    jCardSim's stock bridge), APDUs per card and per key, cards per second for 1 to 500 EI
    cards with the time split into host, audit log, PC/SC stack and card, the host overhead
    against a minimal pyscard loop, and throughput against the number of EI readers. Prints a
    table and writes the figures; docs/PERFORMANCE.md explains them. The full run takes about a
    quarter of an hour, mostly the station swapping 750 cards.
    """
    from . import report as bench_report
    from . import run as benchmark

    options = benchmark.choose_options(quick=quick, audit_dir=audit_dir)
    report = benchmark.run(options, progress=lambda message: click.echo(f"== {message}", err=True))
    click.echo(bench_report.format_report(report))
    json_path, png_path = bench_report.write(report, out)
    click.echo(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))
    if png_path is None:
        click.echo("no plot: matplotlib is missing (pip install -e 'devtools[bench]')", err=True)
