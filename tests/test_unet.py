"""The U-Net denoiser: shapes, time conditioning, concatenated skips, gradients, size."""
import math

import pytest
import torch
import torch.nn as nn

from grader import reference as ref

PART = "unet"


def _model(ns, **kwargs):
    torch.manual_seed(0)
    return ns["UNet"](**kwargs)


def test_output_shape_and_dtype(ns):
    """The U-Net returns a float32 tensor of the input's shape."""
    model = _model(ns)
    for batch in (1, 3, 8):
        x = torch.randn(batch, 1, 28, 28)
        out = model(x, torch.randint(0, 1000, (batch,)))
        assert out.shape == x.shape, "the U-Net's output should have the shape of its input."
        assert out.dtype == torch.float32, "the U-Net should return float32 for float32 input."
        assert torch.isfinite(out).all(), "the U-Net's output has NaN or infinite values."


def test_arguments(ns):
    """UNet(img_channels, base_channels, time_emb_dim) uses its arguments."""
    model = _model(ns, img_channels=3, base_channels=16, time_emb_dim=64)
    x = torch.randn(2, 3, 28, 28)
    assert model(x, torch.tensor([1, 2])).shape == x.shape, "UNet(img_channels=3, ...) should map 3 channels to 3 channels."
    small, large = (sum(p.numel() for p in _model(ns, base_channels=c).parameters()) for c in (16, 32))
    assert large > 2 * small, "base_channels should set the width of the network."


def _awake(model):
    """The model in eval mode with every all-zero parameter given small random values: a zero-initialised output
    layer (a correct and common practice) makes a fresh network's output constant, which says nothing about its
    wiring. A probe: it runs where the model is (ns.run)."""
    import torch
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    return model.eval()   # as _eval: a probe runs alone, without this module's other functions


def _eval(model):
    """The model in eval mode, so that its outputs can be compared: dropout (the DDPM paper trains with 0.1) and
    other train-time randomness make two calls differ in training mode. A probe (ns.run)."""
    return model.eval()


def test_depends_on_t_and_x(ns):
    """The output depends on both x_t and t (in eval mode, so that dropout does not make two calls differ)."""
    model = ns.run(_awake, _model(ns))
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([3, 3])
    assert ref.differ(model(x, t), model(x, torch.tensor([600, 600])), atol=1e-6), \
        "in eval mode, the output is the same for t = 3 and t = 600: is the time embedding used?"
    assert ref.differ(model(x, t), model(torch.randn_like(x), t), atol=1e-6), \
        "in eval mode, the output is the same for two different inputs x: the output should depend on x."
    out = model(torch.cat([x, x]), torch.tensor([3, 600, 3, 600]))
    assert ref.allclose(out[0], out[2], atol=1e-5), \
        ("in eval mode, two copies of one image with the same t in one batch got different outputs: an image's "
         "output should not depend on the other images of its batch.")
    assert ref.differ(out[0], out[1], atol=1e-6), \
        ("two copies of one image with t = 3 and t = 600 in one batch got the same output: each image should be "
         "conditioned on its own t.")


def test_sinusoidal_embedding(ns):
    """sinusoidal_embedding: sines in the first half, cosines in the second."""
    t = torch.tensor([0, 1, 17, 999])
    dim = 32
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    args = t.double()[:, None] * freqs[None]
    want = torch.cat([args.sin(), args.cos()], dim=1)
    got = ns["sinusoidal_embedding"](t, dim)
    assert got.shape == (4, dim), "sinusoidal_embedding(t, dim) should have shape (B, dim)."
    assert ref.allclose(got.double(), want, atol=1e-4), \
        "sinusoidal_embedding should hold sin(t * 10000^(-i/(dim/2))) then cos(...) for i = 0..dim/2-1."


def _record(model, x, t):
    """Concatenations of feature maps along channels, and the input channels each conv/norm layer saw, by width.
    A probe: it runs where the model is (ns.run) and returns only what it saw."""
    import torch
    import torch.nn as nn
    cats, seen = [], []
    real = {name: getattr(torch, name) for name in ("cat", "concat", "concatenate")}

    def recorder(fn):
        def wrapped(tensors, dim=0, *args, **kwargs):
            out = fn(tensors, dim, *args, **kwargs)
            if out.dim() == 4 and dim in (1, -3) and len(tensors) >= 2:
                same = any(a.shape == b.shape and torch.equal(a, b) for i, a in enumerate(tensors) for b in tensors[i + 1:])
                cats.append((out.shape[-1], [x.shape[1] for x in tensors], out.shape[1], same))
            return out
        return wrapped

    hooks = [m.register_forward_hook(lambda m, inp, out: seen.append((inp[0].shape[-1], inp[0].shape[1])))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.GroupNorm))]
    try:
        for name, fn in real.items():
            setattr(torch, name, recorder(fn))
        model(x, t)
    finally:
        for name, fn in real.items():
            setattr(torch, name, fn)
        for h in hooks:
            h.remove()
    return cats, seen


def test_skips_are_concatenated(ns):
    """Skip connections are concatenated (torch.cat along channels) at every resolution: 28, 14 and 7 pixels."""
    model = ns.run(_awake, _model(ns))
    cats, seen = ns.run(_record, model, torch.randn(2, 1, 28, 28), torch.tensor([10, 20]))
    assert cats, "the decoder should concatenate skip connections (torch.cat([h, skip], dim=1)); no concatenation was seen."
    missing = sorted({28, 14, 7} - {width for width, _, _, _ in cats}, reverse=True)   # the text's rule, as stated
    assert not missing, (f"no skip connection is concatenated at {', '.join(map(str, missing))} pixels: the decoder "
                         "should concatenate an encoder feature map at every resolution (28, 14 and 7).")
    for width, parts, total, same in cats:
        assert not same, (f"at {width} pixels a feature map is concatenated with itself: the skip should come from "
                          "the encoder (before the middle block), not be the decoder's own h.")
        assert (width, total) in seen, \
            "a decoder block should take the concatenated feature maps as its input (more channels than either part)."


def test_every_parameter_gets_a_gradient(ns):
    """Every parameter gets a gradient (no unused layers)."""
    unused = ns.run(_without_gradient, _model(ns), torch.randn(4, 1, 28, 28), torch.randint(0, 1000, (4,)))
    assert not unused, f"these parameters get no gradient (unused layers?): {', '.join(unused[:5])}"


def _without_gradient(model, x, t):
    """The parameters that get no finite gradient from a loss on the output. A probe (ns.run)."""
    import torch
    model(x, t).pow(2).mean().backward()
    return [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]


def test_parameter_count(ns):
    """The default UNet() has 0.15 to 3 million parameters (the table's, with C = 16: about 0.39 million; with
    channels (C, 2C, 2C), also correct, 0.18; with C = 32, 1.4)."""
    n = sum(p.numel() for p in _model(ns).parameters())
    assert 0.15e6 <= n <= 3e6, (f"the default UNet() has {n:,} parameters; the architecture table with "
                                "base_channels=16 gives about 0.4 million (between 0.15 and 3 million passes).")


def test_config_rebuilds_model(ns):
    """UNet(**model.config) rebuilds a model that loads the weights."""
    model = ns.run(_eval, _model(ns, base_channels=16))
    copy = ns.run(_eval, ns["UNet"](**model.config))
    copy.load_state_dict(model.state_dict())
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([7])
    assert ref.allclose(copy(x, t), model(x, t)), \
        "in eval mode, UNet(**model.config) with the model's weights gives another output: it should rebuild the same network."


@pytest.mark.gpu
def test_runs_on_cuda(ns):
    """The U-Net runs on a GPU (GPU only)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    model = _model(ns).cuda()
    x = torch.randn(2, 1, 28, 28, device="cuda")
    out = model(x, torch.tensor([1, 2], device="cuda"))
    assert out.shape == x.shape and out.is_cuda, "the U-Net should run on a CUDA GPU when moved there."
