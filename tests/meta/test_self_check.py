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
              CHECKPOINT=str(checkpoint), diffusion=ns["Diffusion"](), show_images=lambda *args, **kwargs: None)
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
