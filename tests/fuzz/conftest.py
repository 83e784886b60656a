"""Makes ``tools/fuzz_targets.py`` (the fuzz targets shared with ``tools/fuzz_report.py``) importable."""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
