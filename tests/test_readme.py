"""The README runs as written: its `bash` and `python` blocks, in order, chain (each section uses
what the earlier ones wrote under `runs/`), then the runnable blocks of docs/ and benchmarks/.

They run in a scratch directory that sees the repository's `recipes/`, with `dnatool` and
`python` from this environment. The long commands run shorter (fewer epochs or generations, no
.pte lowering): `SHORTER` lists each one (as the README writes it) with the words added, and a
README line it no longer matches fails the test, so the list cannot go stale. A search with a
table that failed its own hold-out check (the tiny space's networks are sub-millisecond; a busy
machine can fail it) gets `--force`, printed. Placeholders belong in `text` blocks: a `bash`
block with an upper-case placeholder word fails too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS += sorted((ROOT / "benchmarks").glob("*.md"))
RUNNABLE = ("bash", "python")
PLACEHOLDER = re.compile(r"(?<![\w/.-])(RUN|LUT|ARCH|DIR|FILE|MODEL|KIND|NAME|RECIPE|OUT)(?![\w])")

# README command (its code, without the comment) -> what the test appends to run it shorter
SHORTER = {
    "dnatool train dna-tiny -o teacher=runs/demo/teacher --out runs/dna-tiny": "-o epochs=2",
    "dnatool train dnapp-tiny -o teacher=runs/demo/teacher --out runs/dnapp-tiny": "-o epochs=1",
    "dnatool train spos-tiny --out runs/spos-tiny": "-o epochs=6",
    "dnatool train bossnas-tiny --out runs/bossnas-tiny": "-o epochs=1",
    "dnatool train dna-vit-tiny -o teacher=runs/demo/teacher --out runs/dna-vit": "-o epochs=1",
    "dnatool cascade dnaplus-tiny --generations 2 --out runs/cascade": "--generations 1"
    " -o teacher=runs/demo/teacher -o 'train_overrides=[epochs=1]' -o 'retrain_overrides=[epochs=2]'",
    (
        "dnatool search runs/spos-tiny --algorithm evolution --latency 5ms --lut runs/tiny-lut.json"
    ): "--generations 2",
    # the .pte lowering (a few seconds an op) runs in test_profile_xnnpack.py
    "dnatool profile export-ops runs/tiny-ops --space tiny -n 5": "--no-pte",
}


def _table_failed(work: Path, code: str) -> bool:
    """Whether a search reads a table that failed its own hold-out check: on a busy machine the
    tiny space's sub-millisecond networks can fail it (search refuses such a table without
    --force; the test then adds it, and says so)."""
    from dnatool.profile.lut import check_failure, load_lut

    match = re.search(r"--lut (\S+)", code)
    if not code.startswith("dnatool search") or not match or "--force" in code:
        return False
    return check_failure(load_lut(work / match.group(1)).header) is not None


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, first line number, text) of every fenced block of a Markdown file."""
    found, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, lines = line[3:].strip() or "text", number + 1, []
            else:
                found.append((lang, start, "\n".join(lines)))
                lang = None
        elif lang is not None:
            lines.append(line)
    return found


def commands(text: str) -> list[str]:
    """The shell commands of a block, one per line (`\\` or an open quote continues a line;
    comments dropped)."""
    result, pending = [], ""
    for line in text.splitlines():
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.count('"') % 2:  # inside a quoted string that spans lines
            pending += "\n"
            continue
        code = pending.split(" # ")[0].split("  #")[0].strip()
        pending = ""
        if code and not code.startswith("#"):
            result.append(code)
    return result


def test_runnable_blocks_hold_no_placeholders_and_every_shortening_is_used():
    """Fast guard (no slow mark): what the slow test will run is well formed."""
    seen = set()
    for path in DOCS:
        for lang, start, text in blocks(path):
            if lang == "bash":
                for code in commands(text):
                    assert not PLACEHOLDER.search(code), f"{path.name}:{start}: {code}"
                    seen.add(code)
    assert set(SHORTER) <= seen, sorted(set(SHORTER) - seen)
    readme = [lang for lang, _, _ in blocks(ROOT / "README.md") if lang in RUNNABLE]
    assert readme.count("bash") >= 10 and readme.count("python") >= 2


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_readme_runs_as_written_in_order(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], "OMP_NUM_THREADS": "1"}
    env.pop("DNATOOL_DEBUG", None)
    ran = 0
    for path in DOCS:
        for lang, start, text in blocks(path):
            if lang == "python":
                result = subprocess.run(
                    [sys.executable, "-c", text], cwd=work, env=env, capture_output=True, text=True
                )
                assert result.returncode == 0, f"{path.name}:{start}\n{result.stderr[-3000:]}"
                ran += 1
            elif lang == "bash":
                for code in commands(text):
                    run = f"{code} {SHORTER[code]}" if code in SHORTER else code
                    if _table_failed(work, code):
                        print(f"the table failed its hold-out check here: {run} --force")
                        run += " --force"
                    result = subprocess.run(
                        ["bash", "-c", run], cwd=work, env=env, capture_output=True, text=True
                    )
                    where = f"{path.name}:{start}: {run}"
                    assert result.returncode == 0, f"{where}\n{result.stderr[-3000:]}"
                    ran += 1
    assert ran >= 30
    assert (work / "runs" / "retrain" / "model.pt").is_file()
    assert (work / "runs" / "out" / "model.onnx").is_file()
