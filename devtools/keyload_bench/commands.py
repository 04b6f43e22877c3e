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
@click.option(
    "--real-cards",
    "series",
    flag_value="real",
    help="Only the real-card series (readers following the JCOP 4 timing model).",
)
@click.option(
    "--zero-latency",
    "series",
    flag_value="zero",
    help="Only the zero-latency series (the host's own cost).",
)
def bench(out: Path, quick: bool, audit_dir: Path | None, series: str | None) -> None:
    """Benchmark personalize on the simulated station.

    Starts its own station (stop any running one first) and measures APDU round trips (against
    jCardSim's stock bridge), APDUs per card and per key, cards per second for 1 to 500 EI
    cards with the time split into host, audit log, PC/SC stack and card, the host overhead
    against a minimal pyscard loop, and throughput against the number of EI readers. Then the
    real-card series: cards per hour for 1 to 16 EI readers with one AS and 16 with two, on
    readers that follow the JCOP 4 timing model (a model, not a measurement), against the
    ceiling the AS sets. Prints tables and writes the figures; docs/PERFORMANCE.md explains them.
    The full run takes about a quarter of an hour, mostly the station swapping cards.
    """
    from . import realcards
    from . import report as bench_report
    from . import run as benchmark

    def progress(message: str) -> None:
        click.echo(f"== {message}", err=True)

    options = benchmark.choose_options(quick=quick, audit_dir=audit_dir)
    written = []
    if series in (None, "zero"):
        report = benchmark.run(options, progress=progress)
        click.echo(bench_report.format_report(report))
        written.append(bench_report.write(report, out))
    if series in (None, "real"):
        real = realcards.run_series(options.audit_dir, quick=quick, progress=progress)
        click.echo(bench_report.format_real_cards(real))
        written.append(bench_report.write_real_cards(real, out))
    for json_path, png_path in written:
        click.echo(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))
        if png_path is None:
            click.echo(
                "no plot: matplotlib is missing (pip install -e 'devtools[bench]')", err=True
            )
