# The course's nbgrader configuration: copy it into the course folder (next to source/). Autograding grades each
# part outside the student's kernel with this repository's grader (grader/runner.py, grader/autograde.py), so that
# no code in a submission can change its score, and nbgrader, `make grade` and Gradescope give the same points.
import os
import sys

c = get_config()  # noqa: F821  (nbgrader provides it)
c.CourseDirectory.course_id = "ddpm"

# Where this repository is (the folder with grader/): beside this file, or DDPM_GRADER_DIR when it was copied elsewhere.
GRADER_DIR = os.environ.get("DDPM_GRADER_DIR") or os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, GRADER_DIR)

from grader.autograde import GradeOutsideKernel  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, LimitOutput, SaveAutoGrades  # noqa: E402

# nbgrader's Execute is left out on purpose: it would run the submission unsandboxed (grader/autograde.py says why).
c.Autograde.autograde_preprocessors = [GradeOutsideKernel, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
