"""The project's own promises: the student notebook is generated, leaks nothing, and the grader fails it cleanly."""
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader.cells import REFERENCE, ROOT, cells_by_grade_id

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


def test_notebooks_carry_no_state_of_an_earlier_run():
    """assignment.ipynb has no outputs, execution counts or times, or widget state (progress bars of the last run);
    solution.ipynb no widget state either (nbval compares its outputs, never that)."""
    assignment = json.loads(ASSIGNMENT.read_text())
    assert "widgets" not in assignment["metadata"], "assignment.ipynb carries widget state: run `make assignment`"
    for cell in assignment["cells"]:
        assert not cell.get("outputs") and cell.get("execution_count") is None and "execution" not in cell["metadata"], \
            "assignment.ipynb carries the outputs or execution times of a run: run `make assignment`"
    assert "widgets" not in json.loads(REFERENCE.read_text())["metadata"], \
        "solution.ipynb carries widget state: `make outputs` stores none"


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


def _markdown_before(marker):
    cells = json.loads(REFERENCE.read_text())["cells"]
    i = next(i for i, c in enumerate(cells) if marker in "".join(c["source"]) and c["cell_type"] == "code")
    return "".join(cells[i - 1]["source"])


def test_training_figures_in_the_notebook_come_from_the_benchmark():
    """PASS_STEPS, CPU_STEPS_PER_S and section 5's figures, in bfloat16 and float32, are those of bench/results.json
    (`make bench QUALITY=1`: the worst of three seeds)."""
    from tools import results
    f = results.recipe_figures(results.load())
    bf16, fp32 = f["bfloat16"], f["float32"]
    setup = cells_by_grade_id(REFERENCE)["setup"]
    assert f"PASS_STEPS = {f['pass_steps']} " in setup, f"PASS_STEPS should be {f['pass_steps']}, as measured"
    speeds = f'CPU_STEPS_PER_S = {{"bfloat16": {bf16["steps_per_s"]:.0f}, "float32": {fp32["steps_per_s"]:.0f}}}'
    assert speeds in setup, f"the setup cell should say {speeds}"
    text = _markdown_before("pass_steps=PASS_STEPS")
    for figure in (f"about {bf16['steps_per_s']:.0f} steps per second in bfloat16",
                   f"{fp32['steps_per_s']:.0f} in float32", f"after {bf16['minutes_to_pass']:.1f} minutes in bfloat16",
                   f"{fp32['minutes_to_pass']:.1f} in float32", f"after about {f['pass_steps']:,} steps",
                   f"about {bf16['minutes_to_pass_steps']:.0f} minutes in bfloat16",
                   f"{fp32['minutes_to_pass_steps']:.0f} in float32"):
        assert figure in text, f"section 5 should say {figure!r} (bench/results.json)"


def test_figures_come_from_the_benchmark():
    """The time figures of docs/figures.md (the recipe's speed and time to pass in both precisions, sampling) are
    those of bench/results.json."""
    from tools import results
    bench = results.load()
    f = results.recipe_figures(bench)
    readme = (REFERENCE.parent / "docs" / "figures.md").read_text()
    worst_fid = max(r["snapshots"][-1]["fid_256"] for r in results.runs(bench))
    sampling = bench["speed"]["models"]["ours"]["sampling_64x1000_s"]["median"]
    for figure in (*(f"{p}: {f[p]['steps_per_s']:.1f} steps/s, passes after {f[p]['minutes_to_pass']:.1f} min "
                     f"({f[p]['steps_to_pass']:,} steps)" for p in ("bfloat16", "float32")),
                   f"Frechet distance after 10 min at most {worst_fid:.1f}", f"`PASS_STEPS = {f['pass_steps']}`",
                   f"64 digits with the 1000-step sampler in {sampling:.1f} s"):
        assert figure in readme, f"docs/figures.md should say {figure!r} (bench/results.json)"


def test_executed_notebook_is_small():
    """A student's fully executed notebook (solution.ipynb carries the outputs of one) stays under 2 MB."""
    assert REFERENCE.stat().st_size < 2 * 2**20, f"solution.ipynb is {REFERENCE.stat().st_size / 2**20:.1f} MB"


@pytest.mark.timeout(1200)   # executes the whole notebook: 2-5 min, longer while make test runs another file beside it
def test_release_folder_runs_by_itself(tmp_path):
    """`make release`'s folder alone runs the notebook top to bottom (its stubs filled with the solution, a tiny
    trained model, skip_training): every file it reads is there, the self-check and the optional sections run."""
    import os
    import torch
    from grader.cells import CELLS, load
    from tools import release
    folder = release.build(tmp_path / "release")
    nb = json.loads((folder / "assignment.ipynb").read_text())
    solutions = cells_by_grade_id(REFERENCE)
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in CELLS:
            cell["source"] = solutions[grade_id]
    (folder / "assignment.ipynb").write_text(json.dumps(nb))
    ns = load(REFERENCE)
    torch.manual_seed(0)
    ns["save_checkpoint"](ns["UNet"](base_channels=8, time_emb_dim=16), str(folder / "data" / "ddpm_mnist.pt"))
    env = {**os.environ, "DDPM_OFFLINE": "1", "DDPM_DATA_ROOT": os.path.abspath(os.environ.get("DDPM_DATA_ROOT", "data"))}
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--output", "executed.ipynb", "--ExecutePreprocessor.timeout=600", "assignment.ipynb"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    executed = json.loads((folder / "executed.ipynb").read_text())["cells"]
    outputs = json.dumps([c.get("outputs") for c in executed])
    assert "L_simple on 256 test digits" in outputs, "the self-check should run in the release folder"
    guided = next(c for c in executed if "train_conditional = False" in "".join(c["source"]))
    assert any("image/png" in o.get("data", {}) for o in guided["outputs"]), "section 10 should draw guided digits"
    for absent in ("needs the", "No results of the experiment", "no conditional model"):
        assert absent not in outputs, f"a file the notebook reads is missing from the release: {absent!r}"


def test_the_notebook_saves_its_model_where_the_grader_looks():
    from grader.cells import MODEL
    setup = cells_by_grade_id(REFERENCE)["setup"]
    assert f"CHECKPOINT = os.path.join({', '.join(json.dumps(p) for p in MODEL.parts)})" in setup
