"""CMake: the reserved HTS_FAST_CUDA option fails loudly instead of building a CPU-only module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
@pytest.mark.skipif(not (ROOT / "CMakeLists.txt").exists(), reason="not run from a source tree")
def test_cuda_option_without_compiler_fails_loudly(tmp_path):
    pybind11 = pytest.importorskip("pybind11")
    result = subprocess.run(
        [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(tmp_path),
            "-DHTS_FAST_CUDA=ON",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DSKBUILD_PROJECT_NAME=hts_fast",
            "-DSKBUILD_PROJECT_VERSION=0.1.0",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # no nvcc, no CUDACXX
    )
    assert result.returncode != 0
    assert "HTS_FAST_CUDA=ON" in result.stderr
    # either no compiler was found, or one was and the reserved backend refuses to build
    assert "no CUDA compiler was found" in result.stderr or "not part of this version" in (
        result.stderr
    )
