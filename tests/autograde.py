"""nbgrader autograde that grades outside the student's kernel: a preprocessor for the shipped nbgrader_config.py.

nbgrader executes the submitted notebook in a kernel that the student's code controls: anything graded there can
be faked (a cell can replace the checks, patch torch, or print a pass message). So the points do not come from
that kernel. After nbgrader's Execute step, GradeOutsideKernel hands the submitted notebook to tests/runner.py,
the same isolated grader as `make grade`, and replaces the outputs of each autograded test cell `test_<part>`
with the part's result: the checks in plain words, a hint for each failed one, and the points as the cell's
value, which nbgrader reads as partial credit. formgrader, feedback and export work as usual.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float

RUNNER = Path(__file__).resolve().parent / "runner.py"


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
            hint = check["message"].strip().removeprefix("AssertionError: ").replace("\n", " ")
            lines.append(f"  ✗ {what}\n      Hint: {hint}")
    return "\n".join(lines) + "\n"


class ExecuteForOutputs(Execute):
    """nbgrader's Execute, for the outputs an instructor reads in formgrader. The points do not depend on it, so a
    notebook whose code kills its kernel (os._exit) or hangs is still graded: the error is logged, not raised."""

    def preprocess(self, nb, resources, *args, **kwargs):
        try:
            return super().preprocess(nb, resources, *args, **kwargs)
        except Exception as err:  # noqa: BLE001  (a dead kernel, a timeout: whatever the student's code did)
            self.log.warning("Executing %s stopped (%s: %s); grading it all the same.",
                             resources.get("metadata", {}).get("path"), type(err).__name__, err)
            return nb, resources


class GradeOutsideKernel(Preprocessor):
    """Grade every part with tests/runner.py and write each result into its test cell."""

    enabled = Bool(True, help="nbconvert's preprocessors are off unless enabled").tag(config=True)
    timeout = Float(3600, help="seconds for grading one notebook").tag(config=True)

    def preprocess(self, nb, resources):
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        with tempfile.TemporaryDirectory(prefix="autograde-") as tmp:
            notebook, out = Path(tmp) / "submission.ipynb", Path(tmp) / "result.json"
            notebook.write_text(nbformat.writes(nb))
            command = [sys.executable, str(RUNNER), str(notebook), "--checkpoint", str(folder / "data" / "ddpm_mnist.pt"),
                       "--out", str(out)]
            try:
                subprocess.run(command, capture_output=True, timeout=self.timeout, cwd=tmp)
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
