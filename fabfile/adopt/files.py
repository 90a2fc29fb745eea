"""Putting init's files in the repository: never over a file the team has changed (one that
differs from what init writes now), unless forced; the same run twice changes nothing."""
from pathlib import Path
from typing import Dict, List


def write(repo: Path, files: Dict[str, str], force: bool) -> List[str]:
    """Write each file; a line for each: written, unchanged, or kept (and why)."""
    lines = []
    for name, text in files.items():
        path = repo / name
        if path.is_file():
            current = path.read_text(errors="replace")
            if current == text:
                lines.append(f"unchanged  {name}")
                continue
            if not force:
                lines.append(f"kept       {name} (it differs from what init writes now: your "
                             "edits, or an earlier run's; --force replaces it)")
                continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        lines.append(f"wrote      {name}")
    return lines
