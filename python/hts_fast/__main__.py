"""``python -m hts_fast [weights.npz]``: ESD + power-law fit of every matrix in an .npz file.

Without a path it runs on the bundled demo weights. 2-D arrays are dense layers, 4-D arrays
conv2d kernels in PyTorch layout (out, in, kh, kw); other arrays are listed as skipped with
the reason. The .npz is read with allow_pickle=False.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .conv2d import esd_conv2d
from .esd import esd_batch
from .fits import fit_powerlaw_batch


def default_input() -> Path:
    """Return the path of the bundled demo weights."""
    return Path(str(resources.files("hts_fast") / "data" / "demo_weights.npz"))


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        msg = f"{path}: not a readable .npz file of numeric arrays ({exc})"
        raise SystemExit(msg) from exc


def analyze_npz(path: Path, *, method: str = "svd", threads: int | None = None) -> pd.DataFrame:
    """Return one row per array: shape, ESD summary and power-law fit (or why it failed)."""
    arrays = _load(path)
    names = list(arrays)
    spectra: dict[str, Any] = {}
    dense = [n for n in names if arrays[n].ndim == 2]
    for name, values in zip(
        dense,
        esd_batch([arrays[n] for n in dense], method=method, threads=threads, on_error="return"),
        strict=True,
    ):
        spectra[name] = values
    for name in names:
        if arrays[name].ndim == 4:
            try:
                spectra[name] = esd_conv2d(arrays[name], method=method, threads=threads)
            except (TypeError, ValueError) as exc:
                spectra[name] = exc
    usable = [n for n in names if isinstance(spectra.get(n), np.ndarray)]
    fits = dict(
        zip(usable, fit_powerlaw_batch([spectra[n] for n in usable], threads=threads), strict=True)
    )
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name, "shape": "x".join(map(str, arrays[name].shape))}
        spectrum = spectra.get(name)
        if name not in spectra:
            row["status"] = f"skipped: {arrays[name].ndim}-D array is not a 2-D or 4-D weight"
        elif isinstance(spectrum, Exception):
            row["status"] = f"failed: {spectrum}"
        else:
            fit = fits[name]
            row.update(
                num_evals=len(spectrum),
                lambda_max=float(spectrum[-1]),
                alpha=fit.alpha,
                xmin=fit.xmin,
                D=fit.D,
                sigma=fit.sigma,
                num_pl_spikes=fit.num_pl_spikes,
                status=fit.status if fit.status == "success" else f"failed: {fit.reason}",
            )
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hts_fast", description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, help="an .npz of weight arrays")
    parser.add_argument("--method", choices=["svd", "gram"], default="svd")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    path = args.path or default_input()
    table = analyze_npz(path, method=args.method, threads=args.threads)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(f"# {path}")
        print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
