"""Gradescope's autograder end to end on a simulated /autograder tree: `make gradescope`'s zip unpacked into
source/, then run_autograder as Gradescope runs it (with AUTOGRADER redirected), on the cases that only this path
has: a submission without a model, and one whose model lies elsewhere beside a broken notebook. The solution, the
untouched notebook and the same points as the other paths are in test_instructor_paths.py."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from grader.cells import MODEL, PARTS, REFERENCE, ROOT, TITLES

TOTAL = sum(PARTS.values())


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    tree = tmp_path_factory.mktemp("autograder")
    zipped = tree / "autograder.zip"
    subprocess.run([sys.executable, "-m", "tools.gradescope.build", str(zipped)], check=True, cwd=ROOT)
    with zipfile.ZipFile(zipped) as archive:
        names = archive.namelist()
        archive.extractall(tree / "source")
    assert {"setup.sh", "run_autograder", "solution.ipynb", "grader/runner.py", "data/mnist_classifier.pt",
            "data/mnist_test_gaussian.pt", "data/MNIST/raw/t10k-images-idx3-ubyte"} <= set(names)
    assert not any(name.startswith("tests/meta") for name in names), "the project's own tests do not belong in it"
    shutil.copy(tree / "source" / "run_autograder", tree / "run_autograder")
    os.chmod(tree / "run_autograder", 0o755)
    return tree


def grade(tree, files):
    """Put `files` ({name in the submission: source path or text}) in submission/, run run_autograder, read results."""
    shutil.rmtree(tree / "submission", ignore_errors=True)
    shutil.rmtree(tree / "results", ignore_errors=True)
    for name, content in files.items():
        target = tree / "submission" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content) if isinstance(content, str) else shutil.copy(content, target)
    env = {**os.environ, "AUTOGRADER": str(tree), "AUTOGRADER_PYTHON": sys.executable}
    subprocess.run([str(tree / "run_autograder")], env=env, check=True, timeout=1200)
    result = json.loads((tree / "results" / "results.json").read_text())
    for test in result["tests"]:
        assert set(test) == {"name", "score", "max_score", "output", "visibility"}, test
    return result


def by_part(result):
    part_of = {title: part for part, title in TITLES.items()}
    parts = {}
    for test in result["tests"]:
        part = part_of[test["name"].split(":")[0]]
        parts[part] = parts.get(part, 0) + test["score"]
    return {part: round(points, 2) for part, points in parts.items()}


@pytest.mark.timeout(1800)
def test_missing_model_is_said_and_the_code_is_graded(autograder):
    result = grade(autograder, {"assignment.ipynb": REFERENCE})     # a model at the top level would also do
    assert "No trained model" in result["output"]
    parts = by_part(result)
    assert parts["sample_quality"] == 0 and all(parts[p] == PARTS[p] for p in PARTS if p != "sample_quality"), parts
    assert result["score"] == TOTAL - PARTS["sample_quality"]


@pytest.mark.timeout(1800)
def test_bad_submission_costs_its_own_parts(autograder):
    nb = json.loads(REFERENCE.read_text())
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id == "ddim":
            cell["source"] = "def ddim_step(:\n"                                  # a syntax error
        if grade_id == "inpainting":
            cell["source"] = "".join(cell["source"]) + "\nimport os\nos._exit(3)\n"  # ends the process grading it
    result = grade(autograder, {"model/ddpm_mnist.pt": ROOT / MODEL, "assignment.ipynb": json.dumps(nb)})
    parts = by_part(result)
    assert parts["ddim"] == 0 and parts["inpainting"] == 0, parts
    assert all(parts[p] == PARTS[p] for p in PARTS if p not in ("ddim", "inpainting")), parts
    assert any("syntax error" in t["output"] for t in result["tests"] if t["name"].startswith(TITLES["ddim"]))
