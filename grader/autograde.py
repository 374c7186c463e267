"""nbgrader autograde that grades outside the student's kernel: a preprocessor for the shipped nbgrader_config.py.

nbgrader's own autograde executes the submitted notebook in a kernel, unsandboxed, and takes the points from the
test cells' outputs there: anything in the notebook could then fake its points (replace the checks, patch torch,
print a pass message) or touch the grader's and other students' files. So the configuration drops that execution.
GradeOutsideKernel hands the submitted notebook to grader/runner.py, the same sandboxed grader as `make grade`,
and writes into each autograded test cell `test_<part>` the part's result: the checks in plain words, a hint for
each failed one, and the points as the cell's value, which nbgrader reads as partial credit. formgrader, feedback
and export work as usual; the feedback shows the submitted code and these results.

What is the grader's to fix (no data set, no sandbox, a course configuration that would leave parts ungraded) raises
an error instead: nbgrader then records no grade for the submission, says why and exits with an error, so that no
student is charged for it.
"""
import json
import subprocess
import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Float

from . import feedback, runner
from .cells import MODEL



class GradingSetupError(RuntimeError):
    """The grader cannot grade on this machine or with this configuration: the instructor's to fix."""


class GradeOutsideKernel(Preprocessor):
    """Grade every part with grader/runner.py and write each result into its test cell."""

    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)
    timeout = Float(3600, help="seconds for grading one notebook").tag(config=True)

    def preprocess(self, nb, resources):
        if not self.config.OverwriteCells.get("add_missing_cells"):
            raise GradingSetupError(
                "The course's nbgrader configuration does not set c.OverwriteCells.add_missing_cells = True, so a "
                "notebook whose test cells were deleted (or that comes from an older release) would lose those parts' "
                "points. Use the nbgrader_config.py of the assignment's repository (it may be from an older release).")
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        with tempfile.TemporaryDirectory(prefix="autograde-") as tmp:
            notebook, out = Path(tmp) / "submission.ipynb", Path(tmp) / "result.json"
            notebook.write_text(nbformat.writes(nb))
            # nbgrader's layout is <course>/autograded/<student>/<assignment>: the whole course folder (the source
            # notebook with its solutions, the gradebook, other students' work) stays out of the submission's sight
            course = folder.resolve().parents[2] if len(folder.resolve().parents) > 2 else folder
            hide = [course]
            command, env = runner.command(notebook, "--checkpoint", folder.resolve() / MODEL,
                                          "--out", out, *(["--hide", *hide] if hide else []))
            try:
                proc = subprocess.run(command, capture_output=True, timeout=self.timeout, cwd=tmp, env=env,
                                      text=True, errors="replace")
            except subprocess.TimeoutExpired:
                proc = None
            if proc is not None and proc.returncode == runner.SETUP_EXIT:
                raise GradingSetupError(proc.stderr.strip()[-2000:])
            try:
                parts = json.loads(out.read_text())["parts"]
            except (OSError, ValueError, KeyError) as err:   # the grader itself failed: no grade, and say why
                raise GradingSetupError(f"The grader could not grade {folder} "
                                        f"({'timed out' if proc is None else proc.stderr.strip()[-2000:]}): {err}")
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            part = str(meta.get("grade_id", "")).removeprefix("test_")
            if cell.cell_type != "code" or not meta.get("grade") or not str(meta.get("grade_id", "")).startswith("test_"):
                continue
            if part in parts:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=feedback.text(part, parts[part])),
                                nbformat.v4.new_output("execute_result", data={"text/plain": f"{parts[part]['points']:g}"},
                                                       execution_count=cell.get("execution_count"))]
            else:   # a test cell of no part the grader knows (a notebook from another assignment?)
                raise GradingSetupError(f"The notebook has a test cell '{meta.get('grade_id')}' that the grader does "
                                        "not know: is the course's source notebook this repository's solution.ipynb?")
        return nb, resources
