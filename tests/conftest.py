import sys
from pathlib import Path

# Lets test modules share the analytic scenes in tests/scenes.py.
sys.path.insert(0, str(Path(__file__).parent))
