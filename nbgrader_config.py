# The course's nbgrader configuration (`make course COURSE=dir` writes a course folder with it). Autograding grades
# each part outside the student's kernel with this repository's grader (grader/autograde.py runs grader/runner.py),
# so that no code in a submission can change its score, and nbgrader, `make grade` and Gradescope give the same
# points. The grader is found as an installed package: run nbgrader with the Python of this repository's .venv
# (`make venv` installs the grader there).
import os
import sys

c = get_config()  # noqa: F821  (nbgrader provides it)
c.CourseDirectory.course_id = "ddpm"

try:
    from grader.autograde import GradeOutsideKernel
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, LimitOutput, SaveAutoGrades
except Exception as err:
    # traitlets logs a failing configuration file and goes on without it: nbgrader would then execute the
    # submissions in a kernel, unsandboxed, with its default steps. SystemExit is the one exception it lets through.
    raise SystemExit(
        f"ERROR: this course's nbgrader_config.py cannot load the DDPM grader ({type(err).__name__}: {err}).\n"
        f"This nbgrader runs on {sys.executable}. Run nbgrader with the Python of the assignment repository's .venv "
        "(`source <repository>/.venv/bin/activate`, after `make venv` there), which has the grader installed.")

# nbgrader's Execute is left out on purpose: it would run the submission unsandboxed (grader/autograde.py says why).
c.Autograde.autograde_preprocessors = [GradeOutsideKernel, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
# A notebook from an older release, or one whose test cells were deleted, gets them back from the source, so that
# every graded part is scored (GradeOutsideKernel refuses to grade without this line).
c.OverwriteCells.add_missing_cells = True
# `nbgrader db` runs the `alembic` command: find it beside this Python, however nbgrader was started.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
