"""Scan a model zoo: find every checkpoint under some paths, analyze each, store the results.

Discovery: a file with a checkpoint suffix (``.safetensors .bin .pt .pth .npz .npy .onnx
.keras .h5 .hdf5 .gguf``) is one checkpoint; a folder holding model weights
(``model*.safetensors``, ``adapter_model*``, ``pytorch_model*.bin``) is one checkpoint made
of its own files; subfolders (of any folder, a Trainer's ``checkpoint-500/`` inside a model
folder too) are searched recursively. ``include``/``exclude`` are glob patterns matched
against each checkpoint's path (``*`` crosses folders). Checkpoints are visited in sorted
path order.

Resuming: a checkpoint is identified by its path, a hash of its bytes (BLAKE2b of its weight
files; cached by size and modification time) and the analysis options (including the
hts_fast version). One already stored as done is skipped; one stored as failed is retried
only with ``retry_failed``. Worker processes analyze; this process is the only writer.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .store import Store, canonical_options

SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".npz", ".npy", ".onnx", ".keras", ".h5",
            ".hdf5", ".gguf"}  # fmt: skip
FOLDER_MARKERS = ("model*.safetensors", "adapter_model*", "pytorch_model*.bin",
                  "model.safetensors.index.json")  # fmt: skip
_HASH_CHUNK = 1 << 20


def _is_model_folder(folder: Path) -> bool:
    return any(next(folder.glob(pattern), None) is not None for pattern in FOLDER_MARKERS)


def discover(
    paths: Sequence[str | os.PathLike[str]], include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Path]:  # fmt: skip
    """Return the checkpoints under ``paths`` (files and model folders), sorted, unique."""
    found: set[Path] = set()

    def visit(p: Path) -> None:
        if p.is_file() and p.suffix.lower() in SUFFIXES:
            found.add(p)
        elif p.is_dir():
            model = _is_model_folder(p)
            if model:
                found.add(p)
            for child in sorted(p.iterdir()):
                # a model folder's own files are that model; its subfolders (a Trainer's
                # checkpoint-500/, ...) may hold more checkpoints
                if not model or child.is_dir():
                    visit(child)

    for path in paths:
        p = Path(path)
        if not p.exists():
            msg = f"{p}: no such file or directory"
            raise FileNotFoundError(msg)
        if p.is_file():
            found.add(p)  # named explicitly: taken whatever its suffix
        else:
            visit(p)

    def wanted(p: Path) -> bool:
        text = str(p)
        kept = not include or any(fnmatch.fnmatch(text, g) for g in include)
        return kept and not any(fnmatch.fnmatch(text, g) for g in exclude)

    return sorted(p for p in found if wanted(p))


def _weight_files(checkpoint: Path) -> list[Path]:
    """The files a checkpoint is read from: the file itself, or a folder's own files (its
    subfolders are other checkpoints)."""
    if checkpoint.is_file():
        return [checkpoint]
    return sorted(p for p in checkpoint.iterdir() if p.is_file())


def content_hash(checkpoint: Path, store: Store | None = None) -> str:
    """BLAKE2b (128-bit, hex) of a checkpoint's files: names relative to it, and bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for f in _weight_files(checkpoint):
        stat = f.stat()
        key = str(f.resolve())
        cached = store.cached_hash(key, stat.st_size, stat.st_mtime_ns) if store else None
        if cached is None:
            one = hashlib.blake2b(digest_size=16)
            with f.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    one.update(chunk)
            cached = one.hexdigest()
            if store:
                store.remember_hash(key, stat.st_size, stat.st_mtime_ns, cached)
        name = "" if checkpoint.is_file() else str(f.relative_to(checkpoint))
        digest.update(f"{name}\0{cached}\0".encode())
    return digest.hexdigest()


def analyze_checkpoint(path: str, options: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Worker: analyze one checkpoint; return its table and summary, or its error."""
    from .analyze import analyze, summary

    crash_marker = os.environ.get("HTS_FAST_TEST_CRASH_MARKER")  # tests only: a native crash
    if crash_marker and crash_marker in path:
        os._exit(70)
    hang_marker = os.environ.get("HTS_FAST_TEST_HANG_MARKER")  # tests only: a stuck reader
    if hang_marker and hang_marker in path:
        time.sleep(3600)
    start = time.perf_counter()
    try:
        table = analyze(path, threads=threads, **options)
    except Exception as exc:  # noqa: BLE001 - any failure of one checkpoint is recorded
        return {"error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - start}  # fmt: skip
    table.attrs = {}  # keep pickling small; the store keeps rows only
    return {"table": table, "summary": summary(table), "seconds": time.perf_counter() - start}


def _analyze_defaults() -> dict[str, Any]:
    """analyze()'s keyword defaults (threads excepted), so that options given or left out
    identify the same analysis."""
    import inspect

    from .analyze import analyze

    return {name: p.default for name, p in inspect.signature(analyze).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name != "threads" and not name.startswith("_")}  # fmt: skip


@dataclass
class ScanResult:
    """What a scan did: checkpoints analyzed, skipped (already stored) and failed."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class _Progress:
    """A one-line progress report on stderr: counts, rate and time left."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.start = total, quiet, time.perf_counter()

    def update(self, result: ScanResult) -> None:
        if self.quiet:
            return
        handled = result.done + result.failed + result.skipped
        elapsed = time.perf_counter() - self.start
        computed = result.done + result.failed
        rate = computed / elapsed if elapsed > 0 else 0.0
        left = (self.total - handled) / rate if rate > 0 else float("nan")
        sys.stderr.write(f"\r[{handled}/{self.total}] done {result.done}, skipped "
                         f"{result.skipped}, failed {result.failed} | {rate:.2f}/s, "
                         f"{left:.0f} s left ")  # fmt: skip
        sys.stderr.flush()

    def finish(self) -> None:
        if not self.quiet:
            sys.stderr.write("\n")


def _work(
    store: Store, checkpoints: list[Path], options: dict[str, Any], retry_failed: bool,
    result: ScanResult,
) -> Iterator[tuple[str, str]]:  # fmt: skip
    """(path, hash) of each checkpoint to analyze; counts the ones skipped."""
    text = canonical_options(options)
    for p in checkpoints:
        digest = content_hash(p, store)
        status = store.status(str(p), digest, text)
        if status == "done" or (status == "failed" and not retry_failed):
            result.skipped += 1
            continue
        yield str(p), digest


def scan(
    paths: Sequence[str | os.PathLike[str]], store_path: str | os.PathLike[str], *,
    workers: int = 1, include: Sequence[str] = (), exclude: Sequence[str] = (),
    retry_failed: bool = False, quiet: bool = True, dask: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> ScanResult:  # fmt: skip
    """Analyze every checkpoint under ``paths`` into the SQLite store at ``store_path``.

    ``options`` are analyze()'s keyword arguments (threads excepted: each of ``workers``
    processes gets an equal share of the cores). ``dask``: a Dask scheduler address
    (``tcp://host:8786``) or ``local:N`` for a local cluster of N single-threaded worker
    processes; the workers analyze, this process alone writes the store. ``timeout``: seconds
    one checkpoint may take in a worker process (a reader stuck in native code, e.g. HDF5
    on a damaged file, is killed and the checkpoint stored as failed); it implies worker
    processes even for ``workers=1``. Returns the counts;
    interrupted (Ctrl-C) scans return with ``interrupted=True`` after keeping everything
    already stored.
    """
    from . import __version__, _threads

    if "threads" in options:
        msg = "scan() shares the cores among its workers; it takes no threads= option"
        raise TypeError(msg)
    checkpoints = discover(paths, include, exclude)
    options = {**_analyze_defaults(), **options, "hts_fast": __version__}
    analyze_options = {k: v for k, v in options.items() if k != "hts_fast"}
    text = canonical_options(options)
    threads = max(1, _threads.available_cores() // max(1, workers))
    result = ScanResult()
    progress = _Progress(len(checkpoints), quiet)
    start = time.perf_counter()
    with Store(store_path) as store:

        def record(path: str, digest: str, outcome: dict[str, Any]) -> None:
            error = outcome.get("error", "")
            store.save(path, digest, text, table=outcome.get("table"),
                       summary=outcome.get("summary"), error=error,
                       seconds=outcome["seconds"])  # fmt: skip
            if error:
                result.failed += 1
                result.errors[path] = error
            else:
                result.done += 1
            progress.update(result)

        todo = _work(store, checkpoints, options, retry_failed, result)
        try:
            if dask:
                _on_dask(todo, dask, analyze_options, record)
            elif workers <= 1 and timeout is None:
                for path, digest in todo:
                    record(path, digest, analyze_checkpoint(path, analyze_options, threads))
            else:
                _parallel(todo, max(1, workers), analyze_options, threads, record, timeout)
        except KeyboardInterrupt:
            result.interrupted = True
        progress.finish()
    result.seconds = time.perf_counter() - start
    return result


def _parallel(
    todo: Iterator[tuple[str, str]], workers: int, options: dict[str, Any], threads: int,
    record: Callable[[str, str, dict[str, Any]], None], timeout: float | None = None,
) -> None:  # fmt: skip
    """Keep ``workers`` processes busy; store each result as it arrives, in this process.

    A worker that dies (a crash in a native library, e.g. HDF5 on a corrupted file, or a
    kill) breaks the pool: the checkpoints it had in flight are set aside, a new pool takes
    the rest, and each set-aside checkpoint is then analyzed alone in a fresh process, so
    only the one that kills its process again is stored as failed. A checkpoint still
    running after ``timeout`` seconds is stored as failed and the pool is killed and rebuilt
    the same way.
    """
    suspects: list[tuple[str, str]] = []
    while _run_pool(todo, workers, options, threads, record, suspects, timeout):
        pass
    for path, digest in suspects:
        record(path, digest, _alone(path, options, threads, timeout))


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: no fork of a process that has BLAS and reader threads
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"))


def _run_pool(
    todo: Iterator[tuple[str, str]], workers: int, options: dict[str, Any], threads: int,
    record: Callable[[str, str, dict[str, Any]], None], suspects: list[tuple[str, str]],
    timeout: float | None = None,
) -> bool:  # fmt: skip
    """Run ``todo`` on one pool; return True if the pool broke before the work was done."""
    with _pool(workers) as pool:
        running: dict[Future[dict[str, Any]], tuple[str, str]] = {}
        started: dict[Future[dict[str, Any]], float] = {}

        def overdue() -> bool:
            """Store a checkpoint past its time as failed and kill the pool; True if so."""
            if timeout is None:
                return False
            now = time.monotonic()
            for future in running:
                if future.running():
                    started.setdefault(future, now)
            late = [f for f, t in started.items() if f in running and now - t > timeout]
            if not late:
                return False
            for future in late:
                record(*running.pop(future), _timed_out(timeout))
            _kill(pool)
            suspects.extend(running.values())
            return True

        def settle(limit: int) -> bool:
            """Wait until at most ``limit`` are running; True if the pool broke."""
            while len(running) > limit:
                finished, _ = wait(running, timeout=_POLL if timeout else None,
                                   return_when=FIRST_COMPLETED)  # fmt: skip
                if _drain(finished, running, record):
                    suspects.extend(running.values())
                    return True
                if overdue():
                    return True
            return False

        try:
            for path, digest in todo:
                try:
                    future = pool.submit(analyze_checkpoint, path, options, threads)
                except BrokenProcessPool:  # a worker died since the last result
                    suspects.extend([*running.values(), (path, digest)])
                    return True
                running[future] = (path, digest)
                if settle(2 * workers - 1):
                    return True
            if settle(0):
                return True
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return False


def _drain(
    finished: set[Future[dict[str, Any]]],
    running: dict[Future[dict[str, Any]], tuple[str, str]],
    record: Callable[[str, str, dict[str, Any]], None],
) -> bool:  # fmt: skip
    """Record the finished futures; True (leaving the broken ones in ``running``) when the
    pool died."""
    broken = False
    for future in finished:
        if isinstance(future.exception(), BrokenProcessPool):
            broken = True
            continue
        record(*running.pop(future), _outcome(future))
    return broken


#: How often a scan with a timeout looks at the running checkpoints (seconds).
_POLL = 0.25


def _timed_out(timeout: float) -> dict[str, Any]:
    return {"error": f"timed out: still running after {timeout:g} s (the worker was killed)",
            "seconds": float(timeout)}  # fmt: skip


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's worker processes (ProcessPoolExecutor cannot cancel a running task)."""
    for process in list(getattr(pool, "_processes", {}).values()):  # CPython's pool state
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _alone(
    path: str, options: dict[str, Any], threads: int, timeout: float | None = None
) -> dict[str, Any]:
    """Analyze one checkpoint in a process of its own; its death is this checkpoint's error."""
    with _pool(1) as pool:
        future = pool.submit(analyze_checkpoint, path, options, threads)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:  # the builtin TimeoutError from Python 3.11
            _kill(pool)
            return _timed_out(timeout or 0.0)
        except BrokenProcessPool:
            return {"error": "the worker process died while analyzing this checkpoint (a "
                             "crash in native code, or killed)", "seconds": float("nan")}  # fmt: skip


def _outcome(future: Future[dict[str, Any]]) -> dict[str, Any]:
    """A worker's result; a worker exception is this checkpoint's error."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - recorded with the checkpoint
        return {"error": f"worker failed: {type(exc).__name__}: {exc}", "seconds": float("nan")}


def _dask_client(address: str) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        msg = 'scanning on Dask needs dask.distributed: pip install "hts_fast[dask]"'
        raise SystemExit(msg) from None
    if address.startswith("local:"):
        n = int(address.split(":", 1)[1])
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None)  # fmt: skip
        return Client(cluster)
    return Client(address)


def _on_dask(
    todo: Iterator[tuple[str, str]], address: str, options: dict[str, Any],
    record: Callable[[str, str, dict[str, Any]], None],
) -> None:  # fmt: skip
    """Analyze on a Dask cluster, a bounded number of tasks in flight; store here."""
    from distributed import as_completed

    client = _dask_client(address)
    try:
        slots = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        threads = 1 if address.startswith("local:") else None  # None: all of a worker's cores
        pending = as_completed()
        keys: dict[Any, tuple[str, str]] = {}

        def submit(path: str, digest: str) -> None:
            future = client.submit(analyze_checkpoint, path, options, threads, pure=False)
            keys[future] = (path, digest)
            pending.add(future)

        for path, digest in todo:
            submit(path, digest)
            if pending.count() >= slots:
                future = next(pending)
                record(*keys.pop(future), _outcome(future))
        for future in pending:
            record(*keys.pop(future), _outcome(future))
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
