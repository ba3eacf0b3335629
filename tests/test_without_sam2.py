"""sam2 is an optional extra: without it the library imports, the SAM 1 path works, and
the SAM 2 entry points raise an ImportError that gives the install command."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter in which `import sam2` fails as if it were not installed.
SCRIPT = r"""
import sys

class BlockSam2:
    def find_spec(self, name, path=None, target=None):
        if name == "sam2" or name.startswith("sam2."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockSam2())
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]

import numpy as np
import sam_convex
from sam_convex import Sam2ConvexPredictor, SamConvexPredictor, load_sam2
from tiny_sam import random_image, tiny_sam

predictor = SamConvexPredictor(tiny_sam())
predictor.set_image(random_image(96, 160))
masks, scores, _ = predictor.predict(box=np.array([30.0, 20.0, 120.0, 80.0]), multimask_output=False)
assert masks.shape == (1, 96, 160) and masks.dtype == bool, masks.shape
for call in (lambda: Sam2ConvexPredictor(None), lambda: load_sam2("sam2.1_hiera_tiny.pt")):
    try:
        call()
    except ImportError as err:
        print("IMPORT ERROR:", err)
assert "sam2" not in sys.modules
"""


def test_sam1_path_works_and_sam2_entry_points_say_how_to_install():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    errors = [line for line in done.stdout.splitlines() if line.startswith("IMPORT ERROR:")]
    assert len(errors) == 2
    for line in errors:
        assert "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0" in line
