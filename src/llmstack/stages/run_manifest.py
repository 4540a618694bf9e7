"""Write runs/<run>/run.json (which stage folders make up a run) and link the stage folders.

python -m llmstack.stages.run_manifest runs/<run>/run.json '<manifest json>'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from llmstack.artifacts import write_json


def main(argv: list[str]) -> None:
    out, manifest = Path(argv[0]), json.loads(argv[1])
    run_dir = out.parent
    links = run_dir / "stages"
    links.mkdir(parents=True, exist_ok=True)
    for name, stage_dir in manifest["stages"].items():
        link = links / name.replace("/", "_")
        target = os.path.relpath(Path(stage_dir).resolve(), links.resolve())
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    write_json(out, manifest)


if __name__ == "__main__":
    main(sys.argv[1:])
