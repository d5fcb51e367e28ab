"""Published leaderboards shipped with llava-eval (CSV files next to this module)."""

from pathlib import Path

DIR = Path(__file__).parent
PAPER = DIR / "llava-1.5-paper.csv"
