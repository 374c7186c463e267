"""Every grading path exactly as the README's "For instructors" section types it, with the same points per part.

The commands are read from the README's shell blocks and run by bash from a fresh folder outside the repository
(`path/to/` in the README stands for it), in an environment with no variable the README does not mention: the
venv is activated by the README's own set-up block, and DDPM_DATA_ROOT is passed on only because the README names
it for a data set outside data/ (CI's). Five notebooks go through `make grade`, nbgrader and Gradescope's
run_autograder, one of them also through `python -m grader.runner` and `pytest tests --notebook`:

  alice  an independent solution in a CNN-course style (dropout, torch.compile: its model's    full marks
         weights carry the `_orig_mod.` prefix of a compiled model)
  olga   an independent solution that prints, warns and writes to stderr (tests/meta/corpus),  full marks
         in a notebook from an older release: without the test cell of sample quality
  dan    the solution's answers, with the test cell of DDIM deleted                             full marks
  dave   fakes the grader, DDIM without clipping, os._exit in the in-painting cell            loses DDIM (in part)
                                                                                               and in-painting
  bob    the untouched released notebook, no model                                            zero, no crash
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grader.cells import MODEL, PARTS, REFERENCE, ROOT, TITLES
from nbgrader.api import Gradebook


README = ROOT / "README.md"
NOISY = ROOT / "tests" / "meta" / "corpus" / "noisy.ipynb"
CNN = ROOT / "tests" / "meta" / "corpus" / "cnn_course.ipynb"
TOTAL = sum(PARTS.values())
HIJACK = '''import sys, types
_fake = types.ModuleType("grader")
_fake.run_checks = lambda part, namespace: print(f"The hidden checks of {part} passed.")
sys.modules["grader"] = _fake
'''


def blocks():
    """The README's instructor commands: [(where, [lines])], where is "repository" or "anywhere"."""
    section = README.read_text().split("\n## For instructors", 1)[1].split("\n## ", 1)[0]
    found = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        first, *lines = block.strip().splitlines()
        where = {"# in this repository": "repository", "# anywhere": "anywhere"}[first.strip()]
        found.append((where, [line.split("  #")[0].strip() for line in lines if line.strip()]))
    return found


def block(containing):
    [(where, lines)] = [(w, ls) for w, ls in blocks() if any(containing in line for line in ls)]
    return where, lines


def environment():
    """A user's shell: the system's PATH (no venv on it), HOME, and DDPM_DATA_ROOT, which the README names."""
    venv = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv)
    env = {"PATH": path or os.defpath, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    if os.environ.get("DDPM_DATA_ROOT"):
        env["DDPM_DATA_ROOT"] = os.path.abspath(os.environ["DDPM_DATA_ROOT"])
    return env


def run(where, lines, outside, timeout=1800):
    """Run README lines with bash: the set-up block first (in the repository), then `lines` from where they say."""
    setup = next(ls for w, ls in blocks() if any("activate" in line for line in ls))
    start = ROOT if where == "repository" else outside
    prefix = os.path.relpath(outside, start) + "/"
    script = "\n".join(["set -euo pipefail", f"cd {ROOT}", *setup, f"cd {start}",
                        *(line.replace("path/to/", prefix) for line in lines)])
    proc = subprocess.run(["bash", "-c", script], env=environment(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{lines} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def released():
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ddpm", "--force", "--no-db",
                    "--log-level=ERROR"], check=True, cwd=ROOT / "build" / "course", capture_output=True)
    return json.loads((ROOT / "build" / "course" / "release" / "ddpm" / "assignment.ipynb").read_text())


def filled_in(release, edit=None, drop=(), answers_from=REFERENCE):
    """The released notebook with the answers of another notebook in its solution cells, test cells `drop` removed."""
    answers = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
               for c in json.loads(answers_from.read_text())["cells"] if c["metadata"].get("nbgrader", {}).get("solution")}
    nb = json.loads(json.dumps(release))
    nb["cells"] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") not in drop]
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", answers[grade_id])
            cell["source"] = edit(grade_id, cell["source"]) if edit else cell["source"]
    return nb


def fake_and_break(grade_id, source):
    if grade_id == "forward_process":
        return HIJACK + source
    if grade_id == "inpainting":
        return source + "\nimport os\nos._exit(0)   # would kill a kernel, and kills the process grading this part\n"
    return source.replace(").clamp(-1, 1)", ")") if grade_id == "ddim" else source


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A fresh folder outside the repository with the class's submissions (path/to/submissions in the README)."""
    outside = tmp_path_factory.mktemp("instructor")
    (ROOT / "build" / "course" / "source" / "ddpm").mkdir(parents=True, exist_ok=True)
    shutil.copy(REFERENCE, ROOT / "build" / "course" / "source" / "ddpm" / "assignment.ipynb")
    release = released()
    students = {"alice": filled_in(release, answers_from=CNN), "olga": filled_in(release, drop={"test_sample_quality"}, answers_from=NOISY),
                "dan": filled_in(release, drop={"test_ddim"}), "dave": filled_in(release, fake_and_break),
                "bob": release}
    for student, nb in students.items():
        folder = outside / "submissions" / student
        (folder / "data").mkdir(parents=True)
        (folder / "assignment.ipynb").write_text(json.dumps(nb))
        if student != "bob":
            shutil.copy(ROOT / MODEL, folder / "data" / "ddpm_mnist.pt")
    checkpoint = torch.load(ROOT / MODEL, weights_only=True)   # as a torch.compile'd model's weights are named
    checkpoint["state_dict"] = {f"_orig_mod.{k}": v for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, outside / "submissions" / "alice" / "data" / "ddpm_mnist.pt")
    return outside


EXPECTED = {"alice": dict(PARTS), "olga": dict(PARTS), "dan": dict(PARTS), "bob": dict.fromkeys(PARTS, 0.0),
            "dave": {**PARTS, "inpainting": 0.0, "ddim": "some"}}


def assert_expected(points, path):
    for student, expected in EXPECTED.items():
        for part, want in expected.items():
            got = points[student][part]
            ok = 0 < got < PARTS[part] if want == "some" else got == want
            assert ok, f"{path}: {student} got {got} of {PARTS[part]} in {part} (expected {want})"


@pytest.fixture(scope="module")
def make_grade(outside):
    shutil.rmtree(ROOT / "build" / "grades", ignore_errors=True)
    run(*block("make grade SUBMISSIONS=path/to/submissions"), outside)
    return {s: {p: r["points"] for p, r in json.loads((ROOT / "build" / "grades" / f"{s}.json").read_text())["parts"].items()}
            for s in EXPECTED}


@pytest.mark.timeout(3600)
def test_make_grade_and_regrade(make_grade, outside):
    assert_expected(make_grade, "make grade")
    before = {row["student"]: row for row in csv.DictReader(open(ROOT / "build" / "grades" / "grades.csv"))}
    assert set(before) == set(EXPECTED) and before["alice"]["grader"].startswith("2026")
    assert before["alice"]["sample_quality:fid"] and before["bob"]["unet::test_runs_on_cuda"] == "skipped"
    bob = (ROOT / "build" / "grades" / "bob.md").read_text()   # no model submitted: said as such, once
    assert bob.count("No trained model was submitted") == 1 and "could not be loaded" not in bob, bob
    # the second line of the README's block regrades alice's DDIM alone: the class keeps every other result
    where, lines = block("make grade SUBMISSIONS=path/to/submissions")
    run(where, lines[1:], outside)
    after = {row["student"]: row for row in csv.DictReader(open(ROOT / "build" / "grades" / "grades.csv"))}
    assert after == before
    alice = json.loads((ROOT / "build" / "grades" / "alice.json").read_text())
    assert set(alice["parts"]) == set(PARTS) and alice["points"] == TOTAL


@pytest.mark.timeout(3600)
def test_nbgrader(make_grade, outside):
    course = outside / "course"
    for student in EXPECTED:   # collected as nbgrader collects: submitted/<student>/ddpm/
        shutil.copytree(outside / "submissions" / student, course / "submitted" / student / "ddpm")
    run(*block("nbgrader autograde ddpm"), outside)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ddpm") as gb:
        points = {s: {p: gb.find_grade(f"test_{p}", "assignment", "ddpm", s).score for p in PARTS} for s in EXPECTED}
    assert_expected(points, "nbgrader")
    assert points == make_grade, "nbgrader and make grade should give the same points per part"
    grades = {row["student_id"]: row for row in csv.DictReader(open(course / "grades.csv"))}
    assert float(grades["alice"]["score"]) == TOTAL == float(grades["olga"]["score"]) == float(grades["dan"]["score"])
    feedback = (course / "feedback" / "dave" / "ddpm" / "assignment.html").read_text()
    assert "Hint:" in feedback and "clipped" in feedback
    bob = (course / "feedback" / "bob" / "ddpm" / "assignment.html").read_text()
    assert 1 <= bob.count("raises NotImplementedError") <= len(PARTS), "say 'not done yet' once per part"


@pytest.mark.timeout(1800)
def test_class_report_and_similarity(make_grade, outside):
    """After make grade and nbgrader (the tests above): the README's report block, from both."""
    shutil.rmtree(ROOT / "build" / "report", ignore_errors=True)
    where, lines = block("make report")
    for line in lines:   # each report is written to build/report: read each before the next
        run(where, [line], outside)
        if line.startswith("make report"):
            md = (ROOT / "build" / "report" / "class-report.md").read_text()
            assert md.startswith(f"# Class report: {len(EXPECTED)} submissions"), md[:300]
            limits = md.split("## Grading that hit a limit or crashed")[1].split("\n## ")[0]
            assert "dave (inpainting" in limits and "alice" not in limits, limits
            assert ("gradebook.db" in md) == ("--gradebook" in line)
    pairs = (ROOT / "build" / "similarity" / "pairs.csv").read_text()
    assert pairs.count("\n") == 1 + len(EXPECTED) * (len(EXPECTED) - 1) // 2, pairs   # every pair, and a header
    assert "0.9" in pairs.splitlines()[1] and {"dan", "dave"} <= set(pairs.splitlines()[1].split(",")), pairs


@pytest.mark.timeout(3600)
def test_gradescope(make_grade, outside):
    where, lines = block("run_autograder")
    points = {}
    for student in EXPECTED:
        shutil.rmtree(outside / "autograder", ignore_errors=True)
        run(where, [line.replace("/alice", f"/{student}") for line in lines], outside)
        result = json.loads((outside / "autograder" / "results" / "results.json").read_text())
        by_title = {}
        for test in result["tests"]:
            title = test["name"].split(":")[0]
            by_title[title] = by_title.get(title, 0) + test["score"]
        by_title = {title: round(points, 2) for title, points in by_title.items()}
        points[student] = {p: by_title[TITLES[p]] for p in PARTS}
        maxima = {}
        for test in result["tests"]:
            maxima[test["name"].split(":")[0]] = maxima.get(test["name"].split(":")[0], 0) + test["max_score"]
        assert {t: round(m, 6) for t, m in maxima.items()} == {TITLES[p]: PARTS[p] for p in PARTS}, (student, maxima)
        assert abs(result["score"] - sum(points[student].values())) < 0.011, (student, result["score"], points[student])
    assert_expected(points, "Gradescope")
    assert points == make_grade, "Gradescope and make grade should give the same points per part"


@pytest.mark.timeout(1800)
def test_one_notebook(make_grade, outside):
    run(*block("python -m grader.runner"), outside)
    result = json.loads((outside / "alice.json").read_text())
    assert {p: r["points"] for p, r in result["parts"].items()} == make_grade["alice"]
    proc = run(*block("pytest tests --notebook"), outside)
    assert re.search(r"\d+ passed", proc.stdout) and " failed" not in proc.stdout, proc.stdout[-2000:]
