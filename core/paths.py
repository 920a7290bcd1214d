"""Where the project's non-Python files live."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
LOCALES_DIR = TEMPLATES_DIR / "locales"
