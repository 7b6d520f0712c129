"""Scan a model zoo: find every checkpoint under some paths, analyze each, store the results.

Discovery: a file with a checkpoint suffix (``.safetensors .bin .pt .pth .npz .npy .onnx
.keras .h5 .hdf5 .gguf``) is one checkpoint; a folder holding model weights
(``model*.safetensors``, ``adapter_model*``, ``pytorch_model*.bin``) is one checkpoint made
of its own files; subfolders (of any folder, a Trainer's ``checkpoint-500/`` inside a model
folder too) are searched recursively. ``include``/``exclude`` are glob patterns matched
against each checkpoint's path (``*`` crosses folders). Checkpoints are visited in sorted
path order.

Resuming: a checkpoint is identified by its path, a hash of its bytes (hts128 of its weight
files, a fast non-cryptographic hash; SHA-256 in a store made before hts128; cached by size
and modification time) and the analysis options (including the hts_fast version). One
already stored as done or partial is skipped; one stored as failed is retried only with
``retry_failed``. Worker processes analyze; this process is the only writer.

Outcomes: a checkpoint whose table has a failed layer (NaN/Inf weights, an unsupported
dtype: the layer's row says why) is stored as "partial" with the count of failed layers; one
that cannot be analyzed as a whole (a file-level read error such as a truncated or garbled
file, a crashed or timed-out worker) is stored as "failed" with the error. Neither stops
the scan; ``hts-fast scan`` exits with status 1 at the end when any checkpoint of its paths
failed, in this scan or in an earlier one (stored as failed and not retried).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import functools
import hashlib
import itertools
import os
import stat as stat_module
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from .. import _threads
from .._core_loader import core
from .._progress import progress_bar, wanted
from .._timing import StageTimer
from .store import (
    HASH_ALGORITHMS,
    NEW_STORE_HASH,
    FileHash,
    Store,
    canonical_options,
    failed_layers,
)

SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".npz", ".npy", ".onnx", ".keras", ".h5",
            ".hdf5", ".gguf"}  # fmt: skip
FOLDER_MARKERS = ("model*.safetensors", "adapter_model*", "pytorch_model*.bin",
                  "model.safetensors.index.json")  # fmt: skip
_HASH_CHUNK = 1 << 20
#: .safetensors files up to this size are read whole by the worker that hashes them and
#: analyzed from those bytes (one read; bigger ones are hashed as a stream and mapped).
PREREAD_BYTES = 8 << 20


def _is_model_folder(names: list[str]) -> bool:
    """Whether a folder holding these entries is a model (an entry matches FOLDER_MARKERS)."""
    return any(fnmatch.filter(names, pattern) for pattern in FOLDER_MARKERS)


def discover(
    paths: Sequence[str | os.PathLike[str]], include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Path]:  # fmt: skip
    """Return the checkpoints under ``paths`` (files and model folders), sorted, unique.
    Each folder is listed once (os.scandir: no stat per regular file)."""
    return [p for p, _ in _discover(paths, include, exclude)]


def _discover(
    paths: Sequence[str | os.PathLike[str]], include: Sequence[str] = (),
    exclude: Sequence[str] = (), *, sizes: bool = False,
) -> list[tuple[Path, int | None]]:  # fmt: skip
    """discover(), each checkpoint with its size in bytes when ``sizes`` and it is a file
    found in a folder listing (its one stat call), else None."""
    found: dict[str, int | None] = {}

    def visit(folder: str) -> None:
        with os.scandir(folder) as listing:
            entries = list(listing)
        model = _is_model_folder([e.name for e in entries])
        if model:
            found[folder] = None
        for entry in entries:
            # a model folder's own files are that model; its subfolders (a Trainer's
            # checkpoint-500/, ...) may hold more checkpoints
            if entry.is_dir():
                visit(entry.path)
            elif (not model and os.path.splitext(entry.name)[1].lower() in SUFFIXES
                  and entry.is_file()):  # fmt: skip
                found[entry.path] = entry.stat().st_size if sizes else None

    for path in paths:
        p = Path(path)
        if not p.exists():
            msg = f"{p}: no such file or directory"
            raise FileNotFoundError(msg)
        if p.is_file():
            found[str(p)] = None  # named explicitly: taken whatever its suffix
        elif p.is_dir():
            visit(str(p))

    def wanted(p: Path) -> bool:
        text = str(p)
        kept = not include or any(fnmatch.fnmatch(text, g) for g in include)
        return kept and not any(fnmatch.fnmatch(text, g) for g in exclude)

    unique: dict[Path, int | None] = {}
    for text, size in found.items():
        unique.setdefault(Path(text), size)
    # by path only (Path's order: by parts), so no tuple comparison compares twice
    return sorted(((p, size) for p, size in unique.items() if wanted(p)), key=lambda e: e[0])


def _weight_files(checkpoint: Path) -> list[Path]:
    """The files a checkpoint is read from: the file itself, or a folder's own files (its
    subfolders are other checkpoints)."""
    if checkpoint.is_file():
        return [checkpoint]
    return sorted(p for p in checkpoint.iterdir() if p.is_file())


@functools.lru_cache(maxsize=4096)
def _resolved_folder(folder: str) -> str:
    return str(Path(folder).resolve())


def _cache_key(path: str, link: bool | None = None) -> str:
    """The file's resolved path, the key of the hash cache (a folder is resolved once).
    ``link``: whether ``path`` is a symbolic link, when known."""
    if os.path.islink(path) if link is None else link:
        return os.path.realpath(path)
    folder, name = os.path.split(path)
    return os.path.join(_resolved_folder(folder), name)


def _hasher(algorithm: str) -> Callable[[], Any]:
    """A hashlib-style constructor of the store's content hash (see store.HASH_ALGORITHMS)."""
    if algorithm == "hts128":
        return core.Hash128
    if algorithm == "sha256":
        return hashlib.sha256
    msg = f"unknown content hash {algorithm!r} (known: {', '.join(HASH_ALGORITHMS)})"
    raise ValueError(msg)


#: bytes per read when a file is hashed in pieces (Python < 3.11 has no hashlib.file_digest)
_HASH_CHUNK = 1 << 20


def _file_digest(handle: Any, hasher: Callable[[], Any]) -> str:
    """32 hex digits of the hash of an open binary file, read in pieces."""
    if hasattr(hashlib, "file_digest"):  # Python >= 3.11: reads into one reused buffer
        return hashlib.file_digest(handle, hasher).hexdigest()[:32]
    state = hasher()
    while chunk := handle.read(_HASH_CHUNK):
        state.update(chunk)
    return state.hexdigest()[:32]


def _digest(data: bytes, algorithm: str) -> str:
    """The content hash of some bytes: 32 hex digits (128 bits; SHA-256's first 128)."""
    if algorithm == "hts128":
        return core.hash128(data).hex()
    return _hasher(algorithm)(data).hexdigest()[:32]


def _hash_file(
    path: str, keep: dict[str, bytes] | None, algorithm: str
) -> tuple[str, os.stat_result]:
    """The content hash of a file and its stat (of the file read). With ``keep``, a small
    .safetensors file (size <= PREREAD_BYTES) is read whole and its bytes kept there under
    its path for the analysis (see loaders.safetensors_files.preread)."""
    # O_NONBLOCK: opening a FIFO or device must not block; it is refused just below
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        stat = os.fstat(fd)
        if not stat_module.S_ISREG(stat.st_mode):
            msg = f"{path}: not a regular file"
            raise OSError(msg)
        if keep is None or stat.st_size > PREREAD_BYTES or not path.lower().endswith(
                ".safetensors"):  # fmt: skip
            with open(fd, "rb", closefd=False) as handle:
                return _file_digest(handle, _hasher(algorithm)), stat
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read()
    finally:
        os.close(fd)
    keep[path] = data
    return _digest(data, algorithm), stat


def _file_names(checkpoint: Path, files: list[Path]) -> list[str]:
    """The names a checkpoint's hash is made of: its files' paths relative to its folder, or
    "" for a checkpoint that is one file (hash_checkpoint and cached_content_hash must agree,
    or a resumed scan analyzes every checkpoint again)."""
    return [""] if checkpoint.is_file() else [str(f.relative_to(checkpoint)) for f in files]


def _combine(names: list[str], hashes: list[str], algorithm: str) -> str:
    """A checkpoint's hash from its files' names (relative to a folder; "" for a file) and
    hashes."""
    return _digest("".join(f"{name}\0{one}\0" for name, one in zip(names, hashes,
                                                                   strict=True)).encode(),
                   algorithm)  # fmt: skip


def hash_checkpoint(
    checkpoint: Path | str, keep: dict[str, bytes] | None = None,
    algorithm: str = NEW_STORE_HASH,
) -> tuple[str, list[FileHash]]:  # fmt: skip
    """The content hash (32 hex digits) of a checkpoint's files (names relative to it, and
    bytes), and each file's (resolved path, size, mtime_ns, hash) for the store's hash cache.
    ``algorithm``: "hts128" (hts_fast's own 128-bit hash: 15 GB/s, not cryptographic) or
    "sha256" (its first 128 bits; stores made before hts128). ``keep``: see _hash_file."""
    path = str(checkpoint)
    mode = os.lstat(path).st_mode
    if not stat_module.S_ISDIR(mode):
        link = stat_module.S_ISLNK(mode)
        if not link or not os.path.isdir(path):  # a file, or a link to one
            digest, stat = _hash_file(path, keep, algorithm)
            key = _cache_key(path, link=link)
            return _combine([""], [digest], algorithm), [(key, stat.st_size, stat.st_mtime_ns,
                                                          digest)]  # fmt: skip
    files = _weight_files(Path(path))
    entries = []
    for f in files:
        digest, stat = _hash_file(str(f), keep, algorithm)
        entries.append((_cache_key(str(f)), stat.st_size, stat.st_mtime_ns, digest))
    return _combine(_file_names(Path(path), files), [e[3] for e in entries],
                    algorithm), entries  # fmt: skip


HashLookup = Callable[[str, int, int], "str | None"]


def cached_content_hash(
    checkpoint: Path, lookup: Store | HashLookup, algorithm: str | None = None
) -> tuple[str | None, int]:  # fmt: skip
    """The checkpoint's hash from a hash cache (None if a file is new or changed) and the
    size of its files in bytes. ``lookup``: a Store (its hash), or (path, size, mtime_ns) ->
    hash, then ``algorithm`` (the hash of the store behind it) is required."""
    if isinstance(lookup, Store):
        algorithm = algorithm or lookup.hash_algorithm
        lookup = lookup.cached_hash
    elif algorithm is None:
        msg = "cached_content_hash: pass the algorithm of the hash cache behind `lookup`"
        raise TypeError(msg)
    files = _weight_files(checkpoint)
    hashes: list[str] = []
    size = 0
    for k, f in enumerate(files):
        stat = f.stat()
        size += stat.st_size
        if len(hashes) == k:  # every file so far was cached
            cached = lookup(_cache_key(str(f)), stat.st_size, stat.st_mtime_ns)
            if cached is not None:
                hashes.append(cached)
    if len(hashes) < len(files):
        return None, size
    return _combine(_file_names(checkpoint, files), hashes, algorithm), size


def content_hash(checkpoint: Path, store: Store | None = None) -> str:
    """The content hash (32 hex digits) of a checkpoint's files: names relative to it, and
    bytes, with ``store``'s hash (a new store's without one); files already in ``store``'s
    cache (same size and mtime) are not read again."""
    algorithm = store.hash_algorithm if store else NEW_STORE_HASH
    cached = cached_content_hash(checkpoint, store)[0] if store else None
    if cached is not None:
        return cached
    digest, entries = hash_checkpoint(checkpoint, algorithm=algorithm)
    if store:
        for entry in entries:
            store.remember_hash(*entry)
    return digest


def _test_hooks(path: str) -> None:
    crash_marker = os.environ.get("HTS_FAST_TEST_CRASH_MARKER")  # tests only: a native crash
    if crash_marker and crash_marker in path:
        os._exit(70)
    hang_marker = os.environ.get("HTS_FAST_TEST_HANG_MARKER")  # tests only: a stuck reader
    if hang_marker and hang_marker in path:
        time.sleep(3600)


#: The key of the store's content hash in the options a worker gets (see analyze_checkpoints).
HASH_OPTION = "_content_hash"


def analyze_checkpoints(
    batch: list[tuple[str, str | None]], options: dict[str, Any], threads: int | None
) -> list[dict[str, Any]]:
    """Worker: analyze a batch of checkpoints ((path, known hash or None) each) together.

    Returns one outcome per checkpoint, in order: ``digest`` and ``files`` (its hash and the
    hash-cache entries, when computed here), then either ``table`` (column names and rows of its
    analyze() table) and ``summary``, or ``error``; ``seconds``: its share of the batch's
    analysis time; ``hashing_seconds``, ``analysis_seconds``: the time of each stage spent on
    it here (per checkpoint: the batch's analysis shared equally). The batch shares
    analyze_many()'s pipeline; should that fail as a whole, each checkpoint is analyzed alone
    so that an error stays with its checkpoint. Small .safetensors files are read once: the
    bytes hashed are the bytes analyzed. ``options[HASH_OPTION]``: the store's content hash
    (default: a new store's), not an analyze() option.
    """
    from ..analysis.pipeline import analyze_batch
    from ..loaders.safetensors_files import preread

    options = dict(options)
    algorithm = options.pop(HASH_OPTION, NEW_STORE_HASH)
    outcomes: list[dict[str, Any]] = []
    paths = []
    contents: dict[str, bytes] = {}
    for path, digest in batch:
        _test_hooks(path)
        start = time.perf_counter()
        outcome: dict[str, Any] = {"digest": digest, "files": []}
        if digest is None:
            try:
                outcome["digest"], outcome["files"] = hash_checkpoint(path, contents, algorithm)
            except OSError as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"
        outcome["hashing_seconds"] = time.perf_counter() - start
        outcomes.append(outcome)
        paths.append(path)
    options["threads"] = threads
    options["progress"] = False  # the scan shows its own
    start = time.perf_counter()
    with preread(contents):
        try:
            results: list[Any] = analyze_batch(paths, options, as_rows=True)
        except Exception:  # noqa: BLE001 - one at a time, so that the error stays with its checkpoint
            results = []
            for path in paths:
                try:
                    results.append(analyze_batch([path], options, as_rows=True)[0])
                except Exception as exc:  # noqa: BLE001 - any failure of one checkpoint is recorded
                    results.append(exc)
    contents.clear()
    seconds = (time.perf_counter() - start) / max(1, len(batch))
    for outcome, result in zip(outcomes, results, strict=True):
        outcome["seconds"] = outcome["analysis_seconds"] = seconds
        if "error" in outcome:
            continue
        if isinstance(result, Exception):
            outcome["error"] = f"{type(result).__name__}: {result}"
        else:
            outcome["table"], outcome["summary"] = result["table"], result["summary"]
    return outcomes


#: analyze() options that do not change the numbers: not part of a stored option set.
NOT_STORED = ("threads", "progress")
#: analyze() options a scan does not take (a model object); left out of stored option sets.
NOT_SCANNED = ("base_model",)


def _analyze_defaults() -> dict[str, Any]:
    """analyze()'s keyword defaults (NOT_STORED excepted), so that options given or left out
    identify the same analysis."""
    import inspect

    from ..analysis.pipeline import analyze

    return {name: p.default for name, p in inspect.signature(analyze).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in NOT_STORED + NOT_SCANNED
            and not name.startswith("_")}  # fmt: skip


@dataclass
class ScanResult:
    """What a scan did: checkpoints analyzed (``done``: every layer succeeded; ``partial``:
    some layers failed), skipped (already stored) and failed (no result). ``errors``: path ->
    error of each failed one; ``partial_layers``: path -> (failed layers, layers) of each
    partial one; ``failed_before``: the paths skipped because they are stored as failed
    (not retried without ``retry_failed``; counted in ``skipped``, not in ``failed``)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_before: list[str] = field(default_factory=list)
    partial: int = 0
    interrupted: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    partial_layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 0.0
    #: wall seconds of this process in discovery (finding and looking up checkpoints) and
    #: store (writing results), and the workers' own seconds in hashing and analysis
    timer: StageTimer = field(default_factory=StageTimer)

    @property
    def stage_seconds(self) -> dict[str, float]:
        return dict(self.timer.seconds)


class _Progress:
    """The scan's progress on stderr: a tqdm bar on a terminal (checkpoints handled, rate, time
    left, and the done / skipped / failed counts); elsewhere (a log file) one line every
    LOG_SECONDS and one at the end; nothing when ``quiet``."""

    LOG_SECONDS = 30.0

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.start = total, time.perf_counter()
        self.bar = progress_bar(total, progress=False if quiet else None, desc="scan",
                                unit="checkpoint")  # fmt: skip
        self.log = not quiet and not wanted(None)
        self.logged = self.start
        self.handled = 0

    def update(self, result: ScanResult) -> None:
        handled = result.done + result.partial + result.failed + result.skipped
        self.bar.set_postfix(done=result.done, partial=result.partial, skipped=result.skipped,
                             failed=result.failed, refresh=False)  # fmt: skip
        self.bar.update(handled - self.handled)
        self.handled = handled
        if self.log and time.perf_counter() - self.logged >= self.LOG_SECONDS:
            self._line(result)

    def _line(self, result: ScanResult) -> None:
        self.logged = now = time.perf_counter()
        computed = result.done + result.partial + result.failed
        elapsed = now - self.start
        rate = computed / elapsed if elapsed > 0 else 0.0
        left = f", {(self.total - self.handled) / rate:.0f} s left" if rate > 0 else ""
        print(f"scan: {self.handled}/{self.total} checkpoints (done {result.done}, partial "
              f"{result.partial}, skipped {result.skipped}, failed {result.failed}), "
              f"{rate:.2f}/s{left}", file=sys.stderr, flush=True)  # fmt: skip

    def finish(self, result: ScanResult) -> None:
        self.bar.close()
        if self.log:
            self._line(result)


#: A checkpoint to analyze: its path and its content hash when the store's cache knew it
#: (else the worker computes it while it reads the files anyway).
Item = tuple[str, "str | None"]
Record = Callable[[Item, dict[str, Any]], None]
#: Small checkpoints travel to the workers in batches of at most this many checkpoints and
#: bytes, so that one task's fixed costs (inter-process messages, one pipeline run) are shared.
BATCH_CHECKPOINTS = 32
BATCH_BYTES = 16 * 2**20


class _Ledger:
    """What the store knows, read once when the scan starts (the scan is its only writer):
    the hash cache and the status of every checkpoint stored with these options."""

    def __init__(self, store: Store, text: str, retry_failed: bool) -> None:
        self.hashes = store.hash_cache()
        self.algorithm = store.hash_algorithm
        self.statuses = store.statuses(text)
        self.retry_failed = retry_failed

    def cached_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        return self.hashes.get((path, size, mtime_ns))

    def stored(self, path: str, digest: str) -> bool:
        """Whether this checkpoint needs no analysis: done or partial (its failed layers
        fail for their values, again), or failed and not to be retried."""
        status = self.statuses.get((path, digest))
        return status in ("done", "partial") or (status == "failed" and not self.retry_failed)

    def failed_before(self, path: str, digest: str) -> bool:
        """Whether this checkpoint is stored as failed (skipped when not retried)."""
        return self.statuses.get((path, digest)) == "failed"

    def record(self, path: str, digest: str, status: str, files: Sequence[FileHash]) -> None:
        self.statuses[(path, digest)] = status
        self.hashes.update({(f[0], f[1], f[2]): f[3] for f in files})


def _work(
    ledger: _Ledger, checkpoints: list[tuple[Path, int | None]], result: ScanResult
) -> Iterator[tuple[Item, int]]:
    """Each checkpoint to analyze with its size in bytes (``checkpoints``: each with its size
    when discovery knew it); counts the ones skipped."""
    timer = result.timer
    # only what was stored before this scan can be skipped here (a checkpoint is visited
    # once): the hashes this scan adds as it goes are no reason to look each one up
    cached = bool(ledger.hashes)
    for p, known_size in checkpoints:
        start = time.perf_counter()
        if cached:
            digest, size = cached_content_hash(p, ledger.cached_hash, ledger.algorithm)
        elif known_size is not None:  # a new store: nothing to look up, the size for batching
            digest, size = None, known_size
        else:
            digest, size = None, sum(f.stat().st_size for f in _weight_files(p))
        known = digest is not None and ledger.stored(str(p), digest)
        timer.add("discovery", time.perf_counter() - start)
        if known:
            result.skipped += 1
            if ledger.failed_before(str(p), digest):
                result.failed_before.append(str(p))
            continue
        yield (str(p), digest), size


def _batches(work: Iterator[tuple[Item, int]], count: int) -> Iterator[list[Item]]:
    """Consecutive checkpoints grouped into batches of at most ``count`` and BATCH_BYTES (a
    larger checkpoint travels alone)."""
    batch: list[Item] = []
    size = 0
    for item, nbytes in work:
        if batch and (len(batch) >= count or size + nbytes > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += nbytes
    if batch:
        yield batch


def _batch_size(checkpoints: int, workers: int, timeout: float | None) -> int:
    """Checkpoints per task: 1 with a timeout (it applies to one checkpoint), else enough
    tasks to keep every worker busy to the end, at most BATCH_CHECKPOINTS."""
    if timeout is not None:
        return 1
    return max(1, min(BATCH_CHECKPOINTS, checkpoints // (4 * max(1, workers))))


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
    processes even for ``workers=1``. Small checkpoints are analyzed in batches (up to
    BATCH_CHECKPOINTS per task, through analyze_many()); each is still stored in its own
    transaction: "done", "partial" (a table with failed layers, their count in n_failed)
    or "failed" (no table; the error). One checkpoint's failure never stops the scan.
    Returns the counts; interrupted (Ctrl-C) scans return with ``interrupted=True`` after
    keeping everything already stored.
    """
    if "threads" in options:
        msg = "scan() shares the cores among its workers; it takes no threads= option"
        raise TypeError(msg)
    if "progress" in options:
        msg = "scan() shows its own progress (quiet=True turns it off); it takes no progress="
        raise TypeError(msg)
    result = ScanResult()
    start = time.perf_counter()
    with result.timer.stage("discovery"):
        checkpoints = _discover(paths, include, exclude, sizes=True)
    options = {**_analyze_defaults(), **options, "hts_fast": core.__version__}
    text = canonical_options(options)
    threads = max(1, _threads.available_cores() // max(1, workers))
    progress = _Progress(len(checkpoints), quiet)
    with _opened(store_path, result.timer) as store:
        with result.timer.stage("discovery"):
            ledger = _Ledger(store, text, retry_failed)
        analyze_options = {k: v for k, v in options.items() if k != "hts_fast"}
        analyze_options[HASH_OPTION] = store.hash_algorithm

        def record(item: Item, outcome: dict[str, Any]) -> None:
            path, digest = item
            files = outcome.get("files", ())
            for stage in ("hashing", "analysis"):
                result.timer.seconds[stage] = (result.timer.seconds.get(stage, 0.0)
                                               + outcome.get(f"{stage}_seconds", 0.0))  # fmt: skip
            with result.timer.stage("store"):
                if digest is None:  # hashed by the worker: maybe an unchanged file, touched
                    digest = outcome.get("digest") or _hash_here(path, store)
                    if ledger.stored(path, digest):
                        for entry in files:
                            store.remember_hash(*entry)  # committed with the next transaction
                        result.skipped += 1
                        if ledger.failed_before(path, digest):
                            result.failed_before.append(path)
                        progress.update(result)
                        return
                error = outcome.get("error", "")
                table = None if error else outcome.get("table")
                status = store.save(path, digest, text, table=table,
                                    summary=outcome.get("summary"), error=error,
                                    seconds=outcome["seconds"], files=files)  # fmt: skip
                ledger.record(path, digest, status, files)
                if status == "failed":
                    result.failed += 1
                    result.errors[path] = error or "no result table"
                elif status == "partial":
                    assert table is not None
                    result.partial += 1
                    result.partial_layers[path] = (failed_layers(table), len(table[1]))
                else:
                    result.done += 1
                progress.update(result)

        size = _batch_size(len(checkpoints), 1 if dask else workers, timeout)
        todo = _batches(_work(ledger, checkpoints, result), size)
        try:
            if dask:
                _on_dask(todo, dask, analyze_options, record)
            elif workers <= 1 and timeout is None:
                for batch in todo:
                    _record_batch(batch, analyze_checkpoints(batch, analyze_options, threads),
                                  record)  # fmt: skip
            else:
                _parallel(todo, max(1, workers), analyze_options, threads, record, timeout)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            progress.finish(result)
    result.seconds = time.perf_counter() - start
    return result


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str], timer: StageTimer) -> Iterator[Store]:
    """The store at ``path``, its opening and closing (schema, final commit, the WAL's
    checkpoint into the database) counted in the ``store`` stage."""
    with timer.stage("store"):
        store = Store(path)
    try:
        yield store
    finally:
        with timer.stage("store"):
            store.close()


def _hash_here(path: str, store: Store) -> str:
    """The hash of a checkpoint whose worker died before hashing it ("unreadable" if the
    files cannot be read either)."""
    try:
        return content_hash(Path(path), store)
    except OSError:
        return "unreadable"


def _record_batch(batch: list[Item], outcomes: list[dict[str, Any]], record: Record) -> None:
    for item, outcome in zip(batch, outcomes, strict=True):
        record(item, outcome)


def _parallel(
    todo: Iterator[list[Item]], workers: int, options: dict[str, Any], threads: int,
    record: Record, timeout: float | None = None,
) -> None:  # fmt: skip
    """Keep ``workers`` processes busy; store each result as it arrives, in this process.

    While the worker processes start (an interpreter and hts_fast's imports each, about a
    second), this process analyzes the first batches itself, as long as they are files that
    our own readers parse (safetensors, npy, npz: no native reader that could crash it), and
    no timeout applies; a zoo done before any worker is up never waits for them.

    A worker that dies (a crash in a native library, e.g. HDF5 on a corrupted file, or a
    kill) breaks the pool: the checkpoints it had in flight are set aside and a new pool
    takes the rest. The set-aside checkpoints then run again one per task (a new pool after
    each death), and those in flight at a second death are analyzed each alone in a fresh
    process, so only the one that kills its process again is stored as failed. A checkpoint
    still running after ``timeout`` seconds is stored as failed and the pool is killed and
    rebuilt the same way.
    """
    suspects: list[Item] = []
    share = timeout is None
    while _run_pool(todo, workers, options, threads, record, suspects, timeout, share=share):
        share = False
    retry = iter([[item] for item in suspects])
    last: list[Item] = []
    while _run_pool(retry, workers, options, threads, record, last, timeout):
        pass
    for item in last:
        record(item, _alone(item, options, threads, timeout))


#: Checkpoint files this process may analyze itself while its workers start: read by our own
#: Python readers, so a damaged file raises an error rather than crashing the process.
IN_PROCESS_SUFFIXES = (".safetensors", ".npy", ".npz")


def _in_process_safe(batch: list[Item]) -> bool:
    """Whether every checkpoint of the batch is a file with an IN_PROCESS_SUFFIXES suffix."""
    return all(
        path.lower().endswith(IN_PROCESS_SUFFIXES) and os.path.isfile(path) for path, _ in batch
    )


def _start_server(ready: threading.Event) -> None:
    """Start the fork server of the worker pools (see _context) and wait until it has
    imported hts_fast (a first process forked from it has run); then set ``ready``, also
    when that failed (the pool then reports the failure). Without a fork server (spawn), set
    ``ready`` at once: each spawned worker starts on its own."""
    try:
        context = _context()
        if context.get_start_method() == "forkserver":
            process = context.Process(target=os.getpid, daemon=True)
            process.start()
            process.join()
    finally:
        ready.set()


def _analyze_while_starting(
    todo: Iterator[list[Item]], options: dict[str, Any], threads: int, record: Record
) -> list[Item] | None:  # fmt: skip
    """Analyze batches of ``todo`` here while a thread starts the workers' fork server, until
    it is ready or a batch is not _in_process_safe; return that next batch, or None if
    ``todo`` ran out first (then no worker is started at all)."""
    ready = threading.Event()
    threading.Thread(target=_start_server, args=(ready,), name="hts_fast-start",
                     daemon=True).start()  # fmt: skip
    for batch in todo:
        if ready.is_set() or not _in_process_safe(batch):
            return batch
        _record_batch(batch, analyze_checkpoints(batch, options, threads), record)
    return None


def _pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (see _context) that see this process's environment as
    it is now (test hooks, thread settings), as spawned processes would."""
    return ProcessPoolExecutor(workers, mp_context=_context(), initializer=_take_environment,
                               initargs=(dict(os.environ),))  # fmt: skip


@functools.cache
def _context() -> BaseContext:
    """Where worker processes come from: a fork server where the platform has one, else spawn;
    never a fork of this process (it may hold BLAS and reader threads).

    The fork server is a fresh interpreter started on first use that imports hts_fast.zoo.scan
    once; each worker is then a fork of it: about 20 ms instead of about a second of
    interpreter start and imports per worker, for the workers of every pool of this process
    (the pools that replace a broken one, later scans) too.
    """
    if "forkserver" in get_all_start_methods():
        context = get_context("forkserver")
        context.set_forkserver_preload(["hts_fast.zoo.scan"])
        return context
    return get_context("spawn")


def _take_environment(environ: dict[str, str]) -> None:
    """Worker initializer: this process's environment becomes ``environ`` (a forked worker
    otherwise has the fork server's, from when it started)."""
    os.environ.clear()
    os.environ.update(environ)


def _run_pool(
    todo: Iterator[list[Item]], workers: int, options: dict[str, Any], threads: int,
    record: Record, suspects: list[Item], timeout: float | None = None, *, share: bool = False,
) -> bool:  # fmt: skip
    """Run ``todo`` on one pool; return True if the pool broke before the work was done.
    ``share``: this process analyzes too while the workers start (_analyze_while_starting).
    """
    if share:
        first = _analyze_while_starting(todo, options, threads, record)
        if first is None:  # all done here: no worker needed
            return False
        todo = itertools.chain([first], todo)
    with _pool(workers) as pool:
        running: dict[Future[list[dict[str, Any]]], list[Item]] = {}
        started: dict[Future[list[dict[str, Any]]], float] = {}

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
                for item in running.pop(future):
                    record(item, _timed_out(timeout))
            _kill(pool)
            suspects.extend(item for batch in running.values() for item in batch)
            return True

        def settle(limit: int) -> bool:
            """Wait until at most ``limit`` are running; True if the pool broke."""
            while len(running) > limit:
                finished, _ = wait(running, timeout=_POLL if timeout else None,
                                   return_when=FIRST_COMPLETED)  # fmt: skip
                if _drain(finished, running, record):
                    suspects.extend(item for batch in running.values() for item in batch)
                    _kill(pool)
                    return True
                if overdue():
                    return True
            return False

        try:
            for batch in todo:
                try:
                    future = pool.submit(analyze_checkpoints, batch, options, threads)
                except BrokenProcessPool:  # a worker died since the last result
                    suspects.extend([*(i for b in running.values() for i in b), *batch])
                    _kill(pool)
                    return True
                running[future] = batch
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
    finished: set[Future[list[dict[str, Any]]]],
    running: dict[Future[list[dict[str, Any]]], list[Item]],
    record: Record,
) -> bool:  # fmt: skip
    """Record the finished futures; True (leaving the broken ones in ``running``) when the
    pool died."""
    broken = False
    for future in finished:
        if isinstance(future.exception(), BrokenProcessPool):
            broken = True
            continue
        batch = running.pop(future)
        _record_batch(batch, _outcomes(future, len(batch)), record)
    return broken


#: How often a scan with a timeout looks at the running checkpoints (seconds).
_POLL = 0.25


def _timed_out(timeout: float) -> dict[str, Any]:
    return {"error": f"timed out: still running after {timeout:g} s (the worker was killed)",
            "seconds": float(timeout)}  # fmt: skip


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's worker processes: ProcessPoolExecutor cannot cancel a running task, and
    on CPython 3.11 the shutdown of a broken pool can wait forever for a surviving worker
    idle on the task queue (seen once in CI: test_a_worker_that_dies_fails_only_its_checkpoint
    hung in ProcessPoolExecutor.shutdown); every broken pool is killed before it is left."""
    for process in list(getattr(pool, "_processes", {}).values()):  # CPython's pool state
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _alone(
    item: Item, options: dict[str, Any], threads: int, timeout: float | None = None
) -> dict[str, Any]:
    """Analyze one checkpoint in a process of its own; its death is this checkpoint's error."""
    with _pool(1) as pool:
        future = pool.submit(analyze_checkpoints, [item], options, threads)
        try:
            return future.result(timeout=timeout)[0]
        except concurrent.futures.TimeoutError:  # the builtin TimeoutError from Python 3.11
            _kill(pool)
            return _timed_out(timeout or 0.0)
        except BrokenProcessPool:
            return {"error": "the worker process died while analyzing this checkpoint (a "
                             "crash in native code, or killed)", "seconds": float("nan")}  # fmt: skip


def _outcomes(future: Any, count: int) -> list[dict[str, Any]]:
    """A worker's outcomes; a worker exception is the error of each checkpoint of its batch."""
    try:
        return list(future.result())
    except Exception as exc:  # noqa: BLE001 - recorded with the checkpoints
        error = {"error": f"worker failed: {type(exc).__name__}: {exc}", "seconds": float("nan")}
        return [dict(error) for _ in range(count)]


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
    todo: Iterator[list[Item]], address: str, options: dict[str, Any], record: Record
) -> None:
    """Analyze on a Dask cluster, a bounded number of batches in flight; store here."""
    from distributed import as_completed

    client = _dask_client(address)
    try:
        slots = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        threads = 1 if address.startswith("local:") else None  # None: all of a worker's cores
        pending = as_completed()
        batches: dict[Any, list[Item]] = {}

        def store_one() -> None:
            future = next(pending)
            batch = batches.pop(future)
            _record_batch(batch, _outcomes(future, len(batch)), record)

        for batch in todo:
            future = client.submit(analyze_checkpoints, batch, options, threads, pure=False)
            batches[future] = batch
            pending.add(future)
            if pending.count() >= slots:
                store_one()
        while batches:
            store_one()
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
