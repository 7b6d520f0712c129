"""Regenerate python/hts_fast/data/demo_weights.npz, the bundled default input.

Five float32 layers with known character: two random (Gaussian) ones whose ESD is a
Marchenko-Pastur bulk (large alpha), two heavy-tailed ones (Student-t entries, small
alpha), a low-rank-plus-noise one (a few spikes), and a 4-D conv kernel.
Run: python tools/make_demo_weights.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def main() -> None:
    rng = np.random.default_rng(20261125)
    layers = {
        "random.dense": rng.standard_normal((256, 128)) / 16,
        "heavy.t3": rng.standard_t(3.0, (256, 128)) / 16,
        "heavy.t2": rng.standard_t(2.0, (192, 192)) / 14,
        "spiked.lowrank": (rng.standard_normal((200, 4)) @ rng.standard_normal((4, 150))) / 30
        + rng.standard_normal((200, 150)) / 15,
        "conv.random": rng.standard_normal((32, 16, 3, 3)) / 12,
    }
    out = Path(__file__).resolve().parents[1] / "python" / "hts_fast" / "data" / "demo_weights.npz"
    np.savez_compressed(out, **{k: v.astype(np.float32) for k, v in layers.items()})
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
