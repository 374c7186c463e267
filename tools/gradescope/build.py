"""`make gradescope`: the autograder for Gradescope, build/gradescope/autograder.zip.

Gradescope unpacks the zip into /autograder/source, runs setup.sh once to build its image, then run_autograder once
per submission. The zip holds the grader (grader/ and tests/, without the project's own tests/meta), the reference notebook it
loads cells from, the evaluation classifier with the Gaussian of its features of MNIST's test digits, MNIST's test
set (the grader asks the trained model to denoise some of its digits) and the pinned requirements.
"""
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def contents(data_root):
    yield HERE / "setup.sh", "setup.sh"
    yield HERE / "run_autograder", "run_autograder"
    for folder in ("grader", "tests"):   # the library and the checks, not the project's own tests/meta
        for path in sorted((ROOT / folder).glob("*.py")):
            yield path, f"{folder}/{path.name}"
    for name in ("solution.ipynb", "pytest.ini", "requirements.txt", "data/mnist_classifier.pt",
                 "data/mnist_test_gaussian.pt"):
        yield ROOT / name, name
    for name in TEST_SET:
        yield Path(data_root) / "MNIST" / "raw" / name, f"data/MNIST/raw/{name}"


TEST_SET = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")   # as torchvision reads them (the zip compresses)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "gradescope" / "autograder.zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    data_root = os.environ.get("DDPM_DATA_ROOT", ROOT / "data")
    if not all((Path(data_root) / "MNIST" / "raw" / name).exists() for name in TEST_SET):
        sys.exit(f"MNIST's test set ({', '.join(TEST_SET)}) is not in {data_root}/MNIST/raw: run `make data` first.")
    files = list(contents(data_root))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            info = zipfile.ZipInfo.from_file(path, name)
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, {len(files)} files)")


if __name__ == "__main__":
    main()
