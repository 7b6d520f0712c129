"""The ``hts-fast`` command (also ``python -m hts_fast``).

    hts-fast analyze [PATH] [--out table.csv|.json|.parquet] [--compat weightwatcher-0.7.7]
                     [--esd-method auto|svd|gram|gram32] [--layers ...] [--randomize] [--peft ...]
    hts-fast describe PATH [--out ...]

``analyze`` prints one line per analyzed layer (the main columns), the model summary and the
layers not analyzed with the reason, and writes the whole table with ``--out``. Without a
PATH it runs on the bundled demo weights. Exit status: 0 when the model was read (layers may
still have failed: see their status), 2 when the input cannot be read at all.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .fits.truncated import TPL_ALPHA_MIN

#: Columns printed on the terminal (the table written with --out has them all).
#: --esd-method's choices (analyze()'s esd_method; "randomized" is Python-only)
ESD_METHODS = ["auto", "svd", "gram", "gram32"]
SHOWN = ["layer_id", "name", "layer_type", "N", "M", "num_evals", "alpha", "alpha_weighted",
         "log_norm", "log_spectral_norm", "stable_rank", "warning", "status"]  # fmt: skip
#: The fit's own columns, printed after alpha when present (fit="TPL", "EXP", "LOGNORMAL"...).
FIT_SHOWN = ["xmin", "Lambda", "tpl_status", "lognormal_mu", "lognormal_sigma", "loglik", "alpha_ci_low",
             "alpha_ci_high"]  # fmt: skip


def default_input() -> Path:
    """Return the path of the bundled demo weights (an .npz of five float32 layers)."""
    return Path(str(resources.files("hts_fast") / "data" / "demo_weights.npz"))


def _layers_filter(values: list[str] | None) -> list[Any] | None:
    """--layers items: integers are layer ids, anything else a type or a name."""
    if not values:
        return None
    return [int(v) if v.lstrip("-").isdigit() else v for v in values]


def _peft(value: str | None) -> bool | str:
    return {"": False, None: False, "true": True, "with_base": "with_base"}[value]


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", type=Path,
                        help="a checkpoint file or model folder (default: the bundled demo)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the whole table (.csv, .json, .parquet)")
    _add_analysis_options(parser)


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compat", choices=["weightwatcher-0.7.7"], default=None,
                        help="reproduce WeightWatcher 0.7.7, quirks included")  # fmt: skip
    parser.add_argument("--layers", nargs="+", metavar="ID|TYPE|NAME",
                        help="keep these layer ids, types or names ('-x' excludes x)")  # fmt: skip
    parser.add_argument("--min-evals", type=int, default=8)
    parser.add_argument("--max-evals", type=int, default=15000)
    parser.add_argument("--max-N", type=int, default=50000)
    parser.add_argument("--peft", choices=["true", "with_base"], default=None,
                        help="LoRA adapters: analyze B·A (and W + B·A with 'with_base')")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hts-fast", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    analyze = commands.add_parser("analyze", help="ESD, power-law fit and metrics per layer")
    _add_model_options(analyze)
    _add_compute_options(analyze)
    analyze.add_argument("--threads", type=int, default=None)
    analyze.add_argument("--quiet", action="store_true", help="print nothing; use with --out")
    analyze.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="progress bar on stderr (default: if stderr is a terminal)")  # fmt: skip
    describe = commands.add_parser("describe", help="the layer table, no spectra computed")
    _add_model_options(describe)
    scan = commands.add_parser("scan", help="analyze every checkpoint under PATHs into a store")
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scan.add_argument("--store", type=Path, required=True, help="SQLite file (created/resumed)")
    scan.add_argument("--workers", type=int, default=1, help="worker processes")
    scan.add_argument("--include", nargs="+", default=[], metavar="GLOB")
    scan.add_argument("--exclude", nargs="+", default=[], metavar="GLOB")
    scan.add_argument("--retry-failed", action="store_true")
    scan.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="fail a checkpoint still running after this long (kills its worker)")  # fmt: skip
    scan.add_argument("--dask", metavar="ADDRESS|local:N",
                      help="analyze on a Dask cluster (this process writes the store)")  # fmt: skip
    scan.add_argument("--quiet", action="store_true", help="no progress line")
    _add_analysis_options(scan)
    _add_compute_options(scan)
    correlate = commands.add_parser(
        "correlate", help="rank correlation of each metric with a label, overall and by group"
    )
    correlate.add_argument("store", type=Path)
    correlate.add_argument("--labels", type=Path, required=True,
                           help="CSV with a 'path' column and the label column(s)")  # fmt: skip
    correlate.add_argument("--label", default=None,
                           help="the label column (default: the first whose name contains "
                                "'acc', else the first numeric one)")  # fmt: skip
    correlate.add_argument("--options", metavar="ID",
                           help="the analysis option set to use when the store holds several "
                                "(its id, as the error lists them)")  # fmt: skip
    correlate.add_argument("--group-by", nargs="+", default=[], metavar="COLUMN")
    correlate.add_argument("--out", type=Path, help="write the table (.csv, .json, .parquet)")
    correlate.add_argument("--include-partial", action="store_true",
                           help="keep checkpoints with failed layers (left out by default)")  # fmt: skip
    report = commands.add_parser("report", help="PNG plots and an HTML page (needs matplotlib)")
    report.add_argument("source", type=Path, help="a checkpoint/model folder, or a scan store")
    report.add_argument("--out", type=Path, required=True, help="folder for the report")
    report.add_argument("--labels", type=Path, help="labels CSV (stores only)")
    report.add_argument("--label", default=None)
    report.add_argument(
        "--options",
        metavar="ID",
        help="stores: the analysis option set to use (when there are several)",
    )
    report.add_argument("--group-by", nargs="+", default=[], metavar="COLUMN")
    report.add_argument("--esd-method", choices=ESD_METHODS, default="auto")
    report.add_argument("--include-partial", action="store_true",
                        help="stores: keep checkpoints with failed layers (left out by default)")  # fmt: skip
    demo = commands.add_parser("demo-zoo", help="train the small demo zoo (needs scikit-learn)")
    demo.add_argument("folder", type=Path)
    export = commands.add_parser("export", help="the store's tables as files")
    export.add_argument("store", type=Path)
    export.add_argument("--out", type=Path, required=True, help="folder for the tables")
    export.add_argument("--format", choices=["csv", "parquet", "json"], default="csv")
    return parser


def _add_compute_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--esd-method",
        choices=ESD_METHODS,
        default="auto",
        help="ESD route (default auto: float32 Gram for large layers, svd for small)",
    )
    parser.add_argument("--randomize", action="store_true",
                        help="also the spectra of the shuffled weights")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="seed of --randomize")
    parser.add_argument("--fit", choices=["PL", "TPL", "E_TPL", "EXP", "LOGNORMAL"], default="PL",
                        help="power law (default), truncated power law, or E-TPL")  # fmt: skip
    parser.add_argument("--tpl-alpha-min", type=_alpha_bound, default=TPL_ALPHA_MIN,
                        metavar="NUMBER|none",
                        help=f"TPL/E_TPL: lower bound of alpha (default {TPL_ALPHA_MIN:g}, as "
                             "powerlaw 1.5; 'none': the unconstrained MLE)")  # fmt: skip
    parser.add_argument("--mp-fit", action="store_true", help="Marchenko-Pastur fit, phases")
    parser.add_argument("--detx", action="store_true", help="the detX constraint")
    parser.add_argument("--compare", action="store_true",
                        help="likelihood-ratio tests of the power-law tail")  # fmt: skip
    parser.add_argument("--fix-fingers", choices=["clip_xmax"], default=None)


def _compute_options(args: argparse.Namespace) -> dict[str, Any]:
    """analyze() keywords of the options _add_compute_options defines."""
    return {"esd_method": args.esd_method, "randomize": args.randomize, "seed": args.seed,
            "fit": args.fit, "tpl_alpha_min": args.tpl_alpha_min, "mp_fit": args.mp_fit,
            "detX": args.detx, "compare": args.compare,
            "fix_fingers": args.fix_fingers}  # fmt: skip


def _alpha_bound(text: str) -> float | None:
    """--tpl-alpha-min's value: a number, or "none" (no bound)."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        msg = f"expected a number or 'none', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _write(table: pd.DataFrame, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".csv":
        table.to_csv(out, index=False)
    elif suffix == ".json":
        table.to_json(out, orient="records", indent=1)
    elif suffix == ".parquet":
        try:
            table.to_parquet(out, index=False)
        except ImportError:
            msg = f"--out {out}: writing parquet needs pyarrow (pip install pyarrow)"
            raise SystemExit(msg) from None
    else:
        msg = f"--out {out}: unknown table format {suffix!r} (use .csv, .json or .parquet)"
        raise SystemExit(msg)


def _print_analysis(path: Path, table: pd.DataFrame) -> None:
    from .analysis.table import summary

    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.max_rows", None, "display.float_format", "{:.4g}".format):  # fmt: skip
        print(f"# {path}: {len(table)} layers analyzed")
        if len(table):
            own = [c for c in FIT_SHOWN if c in table]  # xmin as well, once the fit has its own
            fit_columns = own if own != ["xmin"] else []
            at = SHOWN.index("alpha_weighted")
            print(table[[*SHOWN[:at], *fit_columns, *SHOWN[at:]]].to_string(index=False))
        means = ", ".join(f"{k} {v:.4g}" for k, v in summary(table).items())
        print(f"# mean: {means}")
        failed = table[table["status"] == "failed"]
        for _, row in failed.iterrows():
            print(f"# failed: {row['name']}: {row['status_reason']}")
        skipped = table.attrs.get("skipped")
        if skipped is not None and len(skipped):
            print(f"# not analyzed ({len(skipped)}):")
            print(skipped[["layer_id", "name", "skip_reason"]].to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from .analysis.pipeline import analyze
    from .analysis.planning import describe
    from .loaders import TensorReadError

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("analyze", "describe", "scan", "export", "correlate", "report", "demo-zoo",
                "-h", "--help")  # fmt: skip
    if not argv or argv[0] not in commands:
        argv = ["analyze", *argv]  # `python -m hts_fast [PATH]`: analyze (the demo)
    args = _parser().parse_args(argv)
    if args.command == "export":
        return _export(args)
    if args.command == "correlate":
        return _correlate(args)
    if args.command == "report":
        return _report(args)
    if args.command == "demo-zoo":
        from .zoo.demo import make_demo_zoo

        labels = make_demo_zoo(args.folder)
        print(f"trained {len(labels)} models into {args.folder} (labels: "
              f"{args.folder / 'labels.csv'})")  # fmt: skip
        return 0
    options: dict[str, Any] = {
        "layers": _layers_filter(args.layers), "min_evals": args.min_evals,
        "max_evals": args.max_evals, "max_N": args.max_N, "compat": args.compat,
        "peft": _peft(args.peft),
    }  # fmt: skip
    if args.command == "scan":
        return _scan(args, options)
    path = args.path or default_input()
    try:
        if args.command == "describe":
            table = describe(str(path), **options)
        else:
            progress = False if args.quiet else args.progress
            table = analyze(str(path), threads=args.threads, progress=progress,
                            **_compute_options(args), **options)  # fmt: skip
    except (TensorReadError, TypeError, ValueError) as exc:
        print(f"hts-fast: {exc}", file=sys.stderr)
        return 2
    if args.out:
        _write(table, args.out)
    if args.command == "describe":
        with pd.option_context("display.width", 200, "display.max_rows", None):
            print(table.to_string(index=False))
    elif not args.quiet:
        _print_analysis(path, table)
    return 0


def _scan(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from .zoo.scan import scan

    options.update(_compute_options(args))
    try:
        result = scan(args.paths, args.store, workers=args.workers, include=args.include,
                      exclude=args.exclude, retry_failed=args.retry_failed, quiet=args.quiet,
                      dask=args.dask, timeout=args.timeout, **options)  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        print(f"hts-fast: {exc}", file=sys.stderr)
        return 2
    for path, error in result.errors.items():
        print(f"failed: {path}: {error}")
    for path in result.failed_before:
        print(f"failed (in an earlier scan; --retry-failed retries it): {path}")
    for path, (bad, total) in result.partial_layers.items():
        print(f"partial: {path}: {bad} of {total} layers failed (see their status_reason)")
    state = "interrupted" if result.interrupted else "finished"
    before = f" ({len(result.failed_before)} failed earlier)" if result.failed_before else ""
    print(f"scan {state} in {result.seconds:.1f} s: {result.done} analyzed, {result.partial} "
          f"partial (some layers failed), {result.skipped} already stored{before}, "
          f"{result.failed} failed; store: {args.store}")  # fmt: skip
    if not args.quiet and result.stage_seconds:
        split = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(result.stage_seconds.items()))
        print(f"time by stage (workers' hashing and analysis summed): {split}")
    if result.interrupted:
        return 130
    return 1 if result.failed or result.failed_before else 0


def _export(args: argparse.Namespace) -> int:
    from .zoo.store import Store

    try:
        store = Store(args.store, readonly=True)
    except (OSError, ValueError) as exc:
        print(f"hts-fast: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with store:
        for name in ("checkpoints", "layers", "summaries"):
            _write(store.frame(name), args.out / f"{name}.{args.format}")
    print(f"wrote checkpoints, layers and summaries ({args.format}) to {args.out}")
    return 0


def _correlate(args: argparse.Namespace) -> int:
    from .zoo.correlate import (
        checkpoint_metrics,
        labelled,
        left_out_message,
        match_message,
        rank_correlations,
    )
    from .zoo.store import Store

    try:
        with Store(args.store, readonly=True) as store:
            metrics = checkpoint_metrics(store.frame("layers"), store.frame("checkpoints"),
                                         include_partial=args.include_partial,
                                         options=args.options)  # fmt: skip
        data, label = labelled(metrics, args.labels, args.label, args.group_by)
        table = rank_correlations(data, label, args.group_by)
    except (OSError, ValueError) as exc:
        print(f"hts-fast: {exc}", file=sys.stderr)
        return 2
    left_out = left_out_message(metrics)
    if args.out:
        _write(table, args.out)
    with pd.option_context("display.width", 200, "display.max_rows", None,
                           "display.float_format", "{:.3f}".format):  # fmt: skip
        print(f"# {len(data)} checkpoints with labels; label: {label}")
        print(f"# {match_message(data)}")
        if left_out:
            print(f"# {left_out}")
            for row in metrics.attrs["left_out"].itertuples(index=False):
                print(f"#   {row.status}: {row.path}: {row.reason}")
        print(table.to_string(index=False))
    return 0


def _is_store(path: Path) -> bool:
    """Whether ``path`` is an SQLite database (a scan's store)."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _report(args: argparse.Namespace) -> int:
    from .loaders import TensorReadError
    from .zoo.report import model_report, zoo_report

    if not args.source.exists():
        print(f"hts-fast: {args.source}: no such file or directory", file=sys.stderr)
        return 2
    is_store = args.source.is_file() and _is_store(args.source)
    if not is_store and (args.labels or args.options):
        option = "--labels" if args.labels else "--options"
        print(f"hts-fast: {args.source}: {option} needs a scan's store, and this is not an "
              "SQLite database", file=sys.stderr)  # fmt: skip
        return 2
    try:
        if is_store:
            page = zoo_report(args.source, args.out, labels=args.labels, label=args.label,
                              group_by=args.group_by, include_partial=args.include_partial,
                              options=args.options)  # fmt: skip
        else:
            page = model_report(str(args.source), args.out, esd_method=args.esd_method)
    except (TensorReadError, ValueError, OSError) as exc:
        print(f"hts-fast: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {page}")
    return 0
