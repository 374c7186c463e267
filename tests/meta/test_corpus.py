"""Independent solutions get full marks. Each notebook in corpus/ was written from assignment.ipynb alone, by
someone who never saw solution.ipynb, tests/ or the mutants (see corpus/README.md for who, how, and which checks
each one first failed). A failure here is a defect of the grader or of the notebook's text, never of the solution."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from grader.cells import CELLS, MODEL, PARTS, ROOT, failed_checks

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.ipynb"))


def test_the_corpus_is_there():
    assert len(CORPUS) >= 6, "the corpus should hold at least six independent solutions"


@pytest.mark.parametrize("notebook", CORPUS, ids=lambda p: p.stem)
@pytest.mark.parametrize("part", CELLS)
def test_independent_solution_gets_full_marks(notebook, part):
    failures = failed_checks(part, notebook)
    assert not failures, f"{notebook.stem} loses points in {part}: {failures}"


@pytest.mark.timeout(1800)
def test_make_grade_as_documented(tmp_path):
    """`make grade SUBMISSIONS=dir` exactly as the README has it (a relative folder, the default output folder),
    on an independent solution that prints, warns and shows progress bars, with the reference model: full marks."""
    submissions = tmp_path / "submissions" / "carol"
    (submissions / "data").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "corpus" / "noisy.ipynb", submissions / "assignment.ipynb")
    shutil.copy(ROOT / MODEL, submissions / "data" / "ddpm_mnist.pt")
    out = ROOT / "build" / "grades"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(["make", "grade", f"SUBMISSIONS={os.path.relpath(tmp_path / 'submissions', ROOT)}",
                           f"DATA_ROOT={os.path.relpath(os.environ.get('DDPM_DATA_ROOT', ROOT / 'data'), ROOT)}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / "carol.json").read_text())
    assert result["max"] == sum(PARTS.values()) and result["points"] == result["max"], \
        [(c["part"], c["test"], c["message"]) for c in result["checks"] if c["outcome"] == "failed"]
    assert "carol" in (out / "grades.csv").read_text() and "for a class of 1,000" in proc.stdout
