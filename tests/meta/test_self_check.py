"""The notebook's self-check (end of section 7) and the grader's sample-quality part agree: on the reference model,
on an under-trained one, and with the DDIM samplers of independent solutions (tests/meta/corpus). The self-check
cell itself is run, as a student runs it; the grader's verdict comes from grader/sampling.py and grader/quality.py."""
import contextlib
import io
import json

import pytest
import torch

from grader import quality, sampling
from grader.cells import MODEL, REFERENCE, ROOT, load

CPU = torch.device("cpu")
BF16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
SAMPLERS = [REFERENCE, ROOT / "tests" / "meta" / "corpus" / "beginner.ipynb",
            ROOT / "tests" / "meta" / "corpus" / "loops.ipynb"]


def self_check(notebook, checkpoint):
    """Run the notebook's self-check cell with `notebook`'s ddim_sample (the reference's other cells); its figures."""
    cells = json.loads(REFERENCE.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "from grader import quality" in "".join(c["source"]))
    ns = dict(load(notebook, part="ddim"))
    ns.update(grading=False, device=CPU, use_bf16=BF16, test_images=quality.load_mnist(train=False)[0],
              CHECKPOINT=str(checkpoint), show_images=lambda *args, **kwargs: None)   # no `diffusion` of section 5
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "<self-check cell>", "exec"), ns)
    return ns["stats"], printed.getvalue()


def grader_verdict(checkpoint):
    model = sampling.load_model(load(REFERENCE, "unet"), checkpoint, CPU)
    return sampling.measure(model, CPU)


@pytest.fixture(scope="module")
def under_trained(tmp_path_factory):
    """The reference recipe stopped after 300 steps: it denoises real digits, but its samples are far from digits."""
    ns = load(REFERENCE)
    path = tmp_path_factory.mktemp("models") / "short.pt"
    torch.manual_seed(0)
    ns["train"](ns["UNet"](), ns["Diffusion"](), quality.load_mnist(train=True)[0][:9600], max_steps=300,
                use_bf16=BF16, progress=False, checkpoint_path=str(path))
    return path


def _agree(mine, theirs):
    assert quality.judge(mine) == quality.judge(theirs), (mine, theirs)
    assert abs(mine["denoising_loss"] - theirs["denoising_loss"]) < 1e-3
    assert abs(mine["fid"] - theirs["fid"]) < 0.05 * theirs["fid"] + 2, (mine["fid"], theirs["fid"])


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda p: p.stem)
def test_self_check_agrees_on_the_reference_model(sampler):
    model = ROOT / MODEL
    mine, printed = self_check(sampler, model)
    _agree(mine, grader_verdict(model))
    assert quality.passes(mine) and "PASSES with margin" in printed


def test_self_check_agrees_on_an_under_trained_model(under_trained):
    mine, printed = self_check(REFERENCE, under_trained)
    theirs = grader_verdict(under_trained)
    _agree(mine, theirs)
    verdict = quality.judge(theirs)
    assert not verdict["denoising_loss"] and verdict["fid"], "the case worth testing: it denoises, its samples fail"
    assert "NOT YET" in printed and "Train longer" in printed


def test_self_check_finds_grader_beside_the_notebook_from_another_folder(tmp_path, monkeypatch):
    """A kernel started outside the notebook's folder (Jupyter names the notebook in JPY_SESSION_NAME): the
    self-check imports grader/ from beside the notebook. Without that name it says where it looked, no crash."""
    import os
    import nbformat
    from nbclient import NotebookClient
    from grader.cells import cells_by_grade_id
    from tools import release
    folder, elsewhere = release.build(tmp_path / "ddpm"), tmp_path / "elsewhere"
    ns = load(REFERENCE)
    torch.manual_seed(0)   # the kernel's working folder holds what it trained: data/ddpm_mnist.pt
    ns["save_checkpoint"](ns["UNet"](base_channels=8, time_emb_dim=16), str(elsewhere / MODEL))
    cells = [c for c in json.loads(REFERENCE.read_text())["cells"] if c["cell_type"] == "code"]
    solutions = cells_by_grade_id(REFERENCE)
    check = next("".join(c["source"]) for c in cells if "from grader import quality" in "".join(c["source"]))
    unlisted = ('import sys\n'   # a project installed editable (pip install -e) would answer `import grader` anywhere
                'sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]')
    sources = [unlisted] + [solutions[g] for g in ("setup", "helpers")] + [
        next("".join(c["source"]) for c in cells if marker in "".join(c["source"]))
        for marker in ("device = get_device()", "test_images, test_labels = load_images(")] + [
        solutions[g] for g in ("forward_process", "reverse_process", "unet", "training_loop", "ddim")] + [
        'session = os.environ.pop("JPY_SESSION_NAME")', check, 'os.environ["JPY_SESSION_NAME"] = session', check]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    monkeypatch.setenv("JPY_SESSION_NAME", str(folder / "assignment.ipynb"))
    monkeypatch.setenv("DDPM_OFFLINE", "1")
    monkeypatch.setenv("DDPM_DATA_ROOT", os.path.abspath(os.environ.get("DDPM_DATA_ROOT", "data")))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(elsewhere)}}).execute()
    without, with_name = ("".join(o.get("text", "") for o in c.outputs) for c in notebook.cells[-3::2])
    assert "needs the folder grader/" in without and "run the notebook from its folder" in without, without
    assert "L_simple on 256 test digits" in with_name, with_name
