"""The project's own promises: the student notebook is generated, leaks nothing, and the grader fails it cleanly."""
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from grader import REFERENCE, ROOT

ASSIGNMENT = ROOT / "assignment.ipynb"


def _cells(path):
    return [("".join(c["source"]), c["metadata"].get("nbgrader")) for c in json.loads(Path(path).read_text())["cells"]]


def test_assignment_is_generated_from_solution(tmp_path):
    source = tmp_path / "source" / "ddpm"
    source.mkdir(parents=True)
    shutil.copy(REFERENCE, source / "assignment.ipynb")
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ddpm", "--force", "--no-db",
                    "--CourseDirectory.course_id=ddpm", "--log-level=WARN"], cwd=tmp_path, check=True)
    fresh = _cells(tmp_path / "release" / "ddpm" / "assignment.ipynb")
    assert fresh == _cells(ASSIGNMENT), "assignment.ipynb is stale: run `make assignment` and commit it."


def test_assignment_leaks_no_solution_or_hidden_test():
    text = ASSIGNMENT.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "run_checks"):
        assert marker not in text, f"assignment.ipynb contains {marker!r}"
    student_code = "\n".join(source for source, _ in _cells(ASSIGNMENT))
    secret = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)
    given = {line.strip() for source, _ in _cells(REFERENCE) for line in secret.sub("", source).splitlines()}
    leaked = [line.strip() for source, _ in _cells(REFERENCE) for _, block in secret.findall(source)
              for line in block.splitlines()
              if len(line.strip()) > 25 and line.strip() not in given and line.strip() in student_code]
    assert not leaked, f"lines of the solution appear in assignment.ipynb: {leaked[:3]}"
    assert all(not c["outputs"] for c in json.loads(text)["cells"] if c["cell_type"] == "code"), \
        "assignment.ipynb should be released without outputs"


def test_grader_fails_the_untouched_assignment_cleanly(tmp_path):
    report = tmp_path / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests"), "--notebook", str(ASSIGNMENT),
                           "-q", f"--junitxml={report}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1, f"expected failing tests (exit 1), got exit {proc.returncode}:\n{proc.stdout[-3000:]}"
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes = {c.get("name"): [child.tag for child in c] for c in cases}
    assert len(outcomes) >= 30, "the grader should have run all its tests"
    passed = [name for name, tags in outcomes.items() if not tags]
    assert not passed, f"these checks pass on the untouched stubs: {passed}"
    assert all(tags[0] in ("failure", "skipped") for tags in outcomes.values()), \
        "every check should fail with a message, not error out"
