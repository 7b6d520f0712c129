"""The ``hts-fast`` command (also ``python -m hts_fast``).

    hts-fast analyze [PATH] [--out table.csv|.json|.parquet] [--compat weightwatcher-0.7.7]
                     [--esd-method svd|gram] [--layers ...] [--randomize] [--peft ...]
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

#: Columns printed on the terminal (the table written with --out has them all).
SHOWN = ["layer_id", "name", "layer_type", "N", "M", "num_evals", "alpha", "alpha_weighted",
         "log_norm", "log_spectral_norm", "stable_rank", "warning", "status"]  # fmt: skip


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
    analyze.add_argument("--esd-method", choices=["svd", "gram"], default="svd")
    analyze.add_argument("--threads", type=int, default=None)
    analyze.add_argument("--randomize", action="store_true",
                         help="also the spectra of the shuffled weights")  # fmt: skip
    analyze.add_argument("--seed", type=int, default=None, help="seed of --randomize")
    analyze.add_argument("--quiet", action="store_true", help="print nothing; use with --out")
    describe = commands.add_parser("describe", help="the layer table, no spectra computed")
    _add_model_options(describe)
    return parser


def _write(table: pd.DataFrame, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".csv":
        table.to_csv(out, index=False)
    elif suffix == ".json":
        table.to_json(out, orient="records", indent=1)
    elif suffix == ".parquet":
        table.to_parquet(out, index=False)  # needs pyarrow; pandas says so if it is missing
    else:
        msg = f"--out {out}: unknown table format {suffix!r} (use .csv, .json or .parquet)"
        raise SystemExit(msg)


def _print_analysis(path: Path, table: pd.DataFrame) -> None:
    from .analyze import summary

    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.max_rows", None, "display.float_format", "{:.4g}".format):  # fmt: skip
        print(f"# {path}: {len(table)} layers analyzed")
        if len(table):
            print(table[SHOWN].to_string(index=False))
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
    from .analyze import analyze, describe
    from .loaders import TensorReadError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("analyze", "describe", "-h", "--help"):
        argv = ["analyze", *argv]  # `python -m hts_fast [PATH]`: analyze (the demo)
    args = _parser().parse_args(argv)
    path = args.path or default_input()
    options: dict[str, Any] = {
        "layers": _layers_filter(args.layers), "min_evals": args.min_evals,
        "max_evals": args.max_evals, "max_N": args.max_N, "compat": args.compat,
        "peft": _peft(args.peft),
    }  # fmt: skip
    try:
        if args.command == "describe":
            table = describe(str(path), **options)
        else:
            table = analyze(str(path), esd_method=args.esd_method, threads=args.threads,
                            randomize=args.randomize, seed=args.seed, **options)  # fmt: skip
    except (TensorReadError, TypeError) as exc:
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
