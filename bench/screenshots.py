"""README screenshots, taken by the browser tests at 1920x1080 on synthetic images only.

    python -m bench.screenshots [--out docs/screenshots]

Runs the end-to-end browser test with PORTAL_SCREENSHOTS set, which makes it save
worklist.png, viewer.png (full bit depth, AI marks, findings marked, decision filled) and
viewer-history.png (after a correction). Needs the system Chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/browser/test_viewer.py::test_a_radiologist_reads_marks_decides_and_corrects_a_case"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    env = {**os.environ, "PORTAL_SCREENSHOTS": str(args.out.resolve())}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=ROOT, env=env)
    if result.returncode == 0:
        for path in sorted(args.out.glob("*.png")):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
