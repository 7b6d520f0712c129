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


def _nvcc() -> str | None:
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
    )


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
@pytest.mark.skipif(_nvcc() is None, reason="nvcc not found: the CUDA build cannot be checked")
@pytest.mark.skipif(not (ROOT / "CMakeLists.txt").exists(), reason="not run from a source tree")
def test_cuda_extension_builds_with_nvcc(tmp_path):
    """HTS_FAST_CUDA=ON compiles csrc/cuda with nvcc and links hts_fast._cuda (one arch here,
    ~15 s; the default list is 75;80;86;89;90). It imports and reports, even without a GPU."""
    pybind11 = pytest.importorskip("pybind11")
    configure = [
        "cmake", "-S", str(ROOT), "-B", str(tmp_path), "-DHTS_FAST_CUDA=ON",
        "-DCMAKE_CUDA_ARCHITECTURES=75", f"-DCMAKE_CUDA_COMPILER={_nvcc()}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
        "-DSKBUILD_PROJECT_NAME=hts_fast", "-DSKBUILD_PROJECT_VERSION=0.1.0",
    ]  # fmt: skip
    subprocess.run(configure, check=True, capture_output=True, text=True)
    build = ["cmake", "--build", str(tmp_path), "--target", "_cuda", "-j", "2"]
    result = subprocess.run(build, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (module_path,) = tmp_path.glob("_cuda*.so")
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_cuda', {str(module_path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.cuda_architectures, m.runtime_version() >= 12000, m.device_count() >= 0)\n"
        "if m.device_count() == 0:\n"
        "    assert m.device_error(), 'no reason given for the missing device'\n"
        "    try:\n"
        "        m.fit_tpl_batch(8, 8, 1, 8, 8, 1, 8, 8, 8, 0)\n"
        "    except m.CudaError as exc:\n"
        "        assert 'CUDA error in' in str(exc), exc\n"
        "        print('error checked')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("75 True True")
