import sys
from pathlib import Path

# Lets test modules import the shared fixtures in tests/ (shapes.py, tiny_sam.py).
sys.path.insert(0, str(Path(__file__).parent))
