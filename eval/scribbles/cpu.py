"""CPU code paths pinned before torch loads, for numbers that do not depend on the CPU.

A run gives the same numbers on x86-64 CPUs with AVX2 (Intel and AMD) when:

* ATen's vector kernels run at AVX2 width (by default ATen picks AVX-512 where
  present, which changes the order of reductions);
* MKL's conditional numerical reproducibility uses its AVX2 branch (by default MKL
  picks a code path per CPU vendor and model; STRICT also makes it independent of
  memory alignment);
* oneDNN's convolutions are capped at AVX2 (its `jit:avx2` kernels; by default it
  generates AVX-512 code where present). Unlike the two above, oneDNN does not promise
  bit-identical results across CPU models; its JIT kernels' blocking follows the ISA
  and the shapes. Turning oneDNN off (ATen's im2col + MKL path) would remove that
  doubt but costs 2.6x CPU time for the CNN, so it stays on (measured, see README).

All three variables are read lazily by torch, MKL and oneDNN, so `pin()` takes effect
when called before the first computation: the commands call it before importing torch.
A value the user set wins. One thread and flushed subnormals are set around the run by
`eval.scribbles.harness.numerics`.
"""

from __future__ import annotations

import os

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin() -> None:
    """Set the `PINNED` environment variables that are not set yet."""
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
