"""nbgrader autograde that grades outside the student's kernel: a preprocessor for the shipped nbgrader_config.py.

nbgrader's own autograde executes the submitted notebook in a kernel, unsandboxed, and takes the points from the
test cells' outputs there: anything in the notebook could then fake its points (replace the checks, patch torch,
print a pass message) or touch the grader's and other students' files. So the configuration drops that execution.
GradeOutsideKernel hands the submitted notebook to grader/runner.py, the same sandboxed grader as `make grade`,
and writes into each autograded test cell `test_<part>` the part's result: the checks in plain words, a hint for
each failed one, and the points as the cell's value, which nbgrader reads as partial credit. formgrader, feedback
and export work as usual; the feedback shows the submitted code and these results.
"""
import json
import subprocess
import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Float

from . import runner
from .cells import MODEL



def report(part, result):
    """The text a student sees under the test cell of `part`."""
    lines = [f"Graded part '{part}': {result['points']:g} of {result['max']:g} points."]
    for check in result["checks"]:
        what = check.get("checked") or check["test"]
        if check["outcome"] == "skipped":    # e.g. the GPU checks on a CPU
            continue
        if check["outcome"] == "passed":
            lines.append(f"  ✓ {what}")
        else:
            lines.append(f"  ✗ {what}\n      Hint: {check['message']}")
    return "\n".join(lines) + "\n"


class GradeOutsideKernel(Preprocessor):
    """Grade every part with grader/runner.py and write each result into its test cell."""

    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)
    timeout = Float(3600, help="seconds for grading one notebook").tag(config=True)

    def preprocess(self, nb, resources):
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
                subprocess.run(command, capture_output=True, timeout=self.timeout, cwd=tmp, env=env)
                parts = json.loads(out.read_text())["parts"]
            except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as err:
                self.log.error("The grader could not grade %s: %s", folder, err)
                parts = {}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            part = str(meta.get("grade_id", "")).removeprefix("test_")
            if cell.cell_type != "code" or not meta.get("grade") or not str(meta.get("grade_id", "")).startswith("test_"):
                continue
            if part in parts:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=report(part, parts[part])),
                                nbformat.v4.new_output("execute_result", data={"text/plain": f"{parts[part]['points']:g}"},
                                                       execution_count=cell.get("execution_count"))]
            else:
                cell.outputs = [nbformat.v4.new_output("error", ename="GradingError", evalue=(
                    f"The grader could not grade the part '{part}': ask your instructor."), traceback=[])]
        return nb, resources
