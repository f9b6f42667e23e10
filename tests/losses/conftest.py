import sys
from pathlib import Path

# tests/ holds the shared references (reference_losses.py); tests has no __init__.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
