"""`make release`: the folder a student receives, build/release/ (and build/release.zip).

The student notebook (assignment.ipynb, which `make assignment` generates with nbgrader) and every file it reads:
the grader's sample-quality test for the self-check of section 7 (grader/quality.py, with its classifier and the
Gaussian of the test digits' features), section 9's experiment and section 10's conditional model. Nothing of the
grader's checks or of the solution. The students' own trained model is written to data/ddpm_mnist.pt.
"""
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("assignment.ipynb", "grader/__init__.py", "grader/quality.py", "data/mnist_classifier.pt",
         "data/mnist_test_gaussian.pt", "data/ablation.pt", "data/ddpm_mnist_cond.pt")


def clean(path):
    """Strip the state of the last run from a released notebook: outputs, execution counts and times, and the widget
    state (the progress bars' models) that nbgrader copies from the solution. Cells and their nbgrader metadata stay."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)


def build(out):
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    for name in FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, out / name)
    with zipfile.ZipFile(out.with_suffix(".zip"), "w", zipfile.ZIP_DEFLATED) as archive:
        for name in FILES:
            archive.write(out / name, f"ddpm/{name}")
    return out


if __name__ == "__main__":
    out = build(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "release")
    size = out.with_suffix(".zip").stat().st_size / 2**20
    print(f"wrote {out}/ and {out.with_suffix('.zip').name} ({size:.1f} MB): " + ", ".join(FILES))
