"""The package imports its compiled core without optional dependencies."""

from __future__ import annotations

import subprocess
import sys

import hts_fast


def test_build_info_reports_backends_compiler_and_threads():
    info = hts_fast.build_info()
    assert info["backends"]["cpu"]["loaded"] is True
    cuda = info["backends"]["cuda"]
    if cuda["loaded"]:  # a GPU machine: the compiled module or the CuPy fallback
        assert cuda["module"] in ("hts_fast._cuda", "cupy.RawModule (csrc/cuda/kernels.cuh)")
    else:  # says why the compiled module and the CuPy fallback are not usable
        assert "HTS_FAST_CUDA" in cuda["reason"] or "no CUDA" in cuda["reason"]
        assert "CuPy fallback" in cuda["reason"]
    assert info["compiler"]
    assert "-O" in info["cxx_flags"] or "/O" in info["cxx_flags"]  # GCC/Clang or MSVC
    assert info["mul128"] in ("int128", "umul128", "umulh", "portable")
    assert info["lapack"]["ready"] is True
    assert info["default_threads"] >= 1
    assert info["hardware_threads"] >= 1
    assert info["version"] == hts_fast.__version__


def test_import_does_not_pull_torch_or_cupy():
    code = (
        "import sys, hts_fast\n"
        "hts_fast.fit_powerlaw([1.0, 2.0, 3.0, 5.0])\n"
        "print(sorted(m for m in ('torch', 'cupy', 'safetensors') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_stub_names_every_binding():
    """python/hts_fast/_core.pyi (the hand-written stub) declares every compiled function."""
    import re
    from pathlib import Path

    from hts_fast._core_loader import core

    stub = (Path(hts_fast.__file__).parent / "_core.pyi").read_text()
    declared = set(re.findall(r"^(?:def|class) (\w+)", stub, flags=re.MULTILINE))
    compiled = {name for name in dir(core) if not name.startswith("__")}
    assert compiled - declared == set()
