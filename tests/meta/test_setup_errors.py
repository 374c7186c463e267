"""Problems of the grader's own set-up stop grading with a message that says what to fix, on every path; none of them
gives a student 0 in silence, and none lets nbgrader fall back to running submissions in a kernel."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from grader import runner
from grader.cells import REFERENCE, ROOT

# nbgrader_config.py as an older release shipped it: the grader was looked for in tests/ (DDPM_GRADER_DIR)
OLD_CONFIG = '''import os
import sys
c = get_config()
c.CourseDirectory.course_id = "ddpm"
GRADER_DIR = os.environ.get("DDPM_GRADER_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")
sys.path.insert(0, GRADER_DIR)
from autograde import GradeOutsideKernel
c.Autograde.autograde_preprocessors = [GradeOutsideKernel]
'''


def nbgrader(course, *args, env=None):
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          timeout=900, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    course = tmp_path_factory.mktemp("release")
    (course / "source" / "ddpm").mkdir(parents=True)
    shutil.copy(REFERENCE, course / "source" / "ddpm" / "assignment.ipynb")
    assert nbgrader(course, "generate_assignment", "ddpm", "--no-db").returncode == 0
    return (course / "release" / "ddpm" / "assignment.ipynb").read_text()


def course_with(tmp_path, release, config=True):
    """A course folder (with the repository's nbgrader_config.py, or none) and one submission: the untouched notebook."""
    (tmp_path / "source" / "ddpm").mkdir(parents=True)
    if config:
        shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copy(REFERENCE, tmp_path / "source" / "ddpm" / "assignment.ipynb")
    (tmp_path / "submitted" / "bob" / "ddpm").mkdir(parents=True)
    (tmp_path / "submitted" / "bob" / "ddpm" / "assignment.ipynb").write_text(release)
    proc = nbgrader(tmp_path, "generate_assignment", "ddpm")   # the gradebook learns the notebook and its cells
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return tmp_path


def test_the_data_set_defaults_to_the_repository(monkeypatch):
    monkeypatch.delenv("DDPM_DATA_ROOT", raising=False)
    assert runner.data_root() == (ROOT / "data").resolve()   # not the current folder, wherever grading runs


@pytest.mark.timeout(900)
def test_missing_data_stops_every_path(tmp_path, release):
    empty = {"DDPM_DATA_ROOT": str(tmp_path / "nothing")}
    nb = tmp_path / "class" / "bob" / "assignment.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text(release)
    env = {**os.environ, **empty}
    proc = subprocess.run([sys.executable, "-m", "grader.runner", str(nb), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == runner.SETUP_EXIT and "DDPM_DATA_ROOT" in proc.stderr and "MNIST" in proc.stderr
    assert not (tmp_path / "r.json").exists()
    proc = subprocess.run([sys.executable, "-m", "tools.grade", str(tmp_path / "class"), "--out", str(tmp_path / "g")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode != 0 and "MNIST" in proc.stderr and not (tmp_path / "g" / "grades.csv").exists()
    proc = subprocess.run([sys.executable, "-m", "grader.gradescope", str(nb.parent), str(tmp_path / "results.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "MNIST" in proc.stderr and not (tmp_path / "results.json").exists()
    course = course_with(tmp_path / "course", release)
    proc = nbgrader(course, "autograde", "ddpm", env=empty)
    assert proc.returncode != 0 and "MNIST" in proc.stdout + proc.stderr
    assert not (course / "autograded" / "bob" / "ddpm" / "assignment.ipynb").exists(), \
        "no graded notebook is recorded for a submission that was not graded"


@pytest.mark.timeout(900)
def test_a_course_folder_without_the_config_still_grades_outside_the_kernel(tmp_path, release):
    """nbgrader run with the venv's Python finds the course's configuration in .venv/etc/jupyter (make venv)."""
    course = course_with(tmp_path, release, config=False)
    proc = nbgrader(course, "autograde", "ddpm")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    graded = json.loads((course / "autograded" / "bob" / "ddpm" / "assignment.ipynb").read_text())
    outputs = ["".join(o.get("text", "")) for c in graded["cells"] for o in c.get("outputs", [])
               if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_unet"]
    assert any("U-Net: 0 of 3 points" in text and "not done yet" in text for text in outputs), outputs


@pytest.mark.timeout(900)
def test_a_config_that_cannot_load_the_grader_stops_nbgrader(tmp_path, release):
    broken = tmp_path / "broken" / "grader"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('no grader here')\n")
    course = course_with(tmp_path / "course", release)
    proc = nbgrader(course, "autograde", "ddpm", env={"PYTHONPATH": str(broken.parent)})
    assert proc.returncode != 0 and "cannot load the DDPM grader" in proc.stderr and ".venv" in proc.stderr
    assert not (course / "autograded").exists()


@pytest.mark.timeout(900)
def test_a_config_from_an_older_release_stops_nbgrader(tmp_path, release):
    course = course_with(tmp_path, release)
    (course / "nbgrader_config.py").write_text(OLD_CONFIG)
    proc = nbgrader(course, "autograde", "ddpm", env={"DDPM_GRADER_DIR": str(ROOT / "tests")})  # as it said
    assert proc.returncode != 0 and "older release" in proc.stderr and "make course" in proc.stderr
    assert not (course / "autograded").exists()


@pytest.mark.timeout(900)
def test_a_config_that_would_lose_deleted_cells_is_refused(tmp_path, release):
    course = course_with(tmp_path, release)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write("c.OverwriteCells.add_missing_cells = False\n")
    proc = nbgrader(course, "autograde", "ddpm")
    assert proc.returncode != 0 and "add_missing_cells" in proc.stdout + proc.stderr
    assert not (course / "autograded" / "bob" / "ddpm" / "assignment.ipynb").exists()
