"""Run every benchmark: each ``bench/<name>/run.py`` in its own process (``python -m bench [name ...]``).

Options after the names go to each script as they are: ``python -m bench export --formats coco``.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]
    scripts = sorted(HERE.glob("*/run.py"))
    if names:
        scripts = [s for s in scripts if s.parent.name in names]
    failed = []
    for script in scripts:
        print(f"== bench/{script.parent.name}", flush=True)
        if subprocess.run([sys.executable, str(script), *options], cwd=HERE.parent, check=False).returncode:
            failed.append(script.parent.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
