"""The U-Net denoiser: shapes, time conditioning, concatenated skips, gradients, size."""
import math

import pytest
import torch
import torch.nn as nn

from grader import probes
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


def test_output_is_not_squashed(ns):
    """The output can leave [-1, 1]: it predicts N(0, I) noise, not an image (no tanh or clamp at the end)."""
    model = ns.run(_awake, _model(ns))
    largest = ns.run(_largest_output_when_loud, model, torch.randn(2, 1, 28, 28), torch.tensor([10, 900]))
    assert largest > 1.5, (f"with its last layer made to give outputs of standard deviation 3, the U-Net's output "
                           f"still stayed within [-{largest:.2f}, {largest:.2f}]: the noise it predicts is N(0, I) "
                           "and often exceeds 1, so the output should not be squashed (no tanh, sigmoid or clamp at "
                           "the end).")


def _largest_output_when_loud(model, x, t):
    """The largest |output| when the last layer with parameters that runs has its output scaled to a standard
    deviation of 3 (whatever follows it, such as a tanh, then shows). A probe (ns.run)."""
    import torch
    ran = []
    hooks = [m.register_forward_hook(lambda m, inp, out: ran.append(m)) for m in model.modules()
             if next(m.parameters(recurse=False), None) is not None]
    with torch.no_grad():
        model(x, t)
    for h in hooks:
        h.remove()
    loud = ran[-1].register_forward_hook(lambda m, inp, out: out * (3 / out.float().std().clamp(min=1e-8)))
    try:
        with torch.no_grad():
            return model(x, t).abs().max().item()
    finally:
        loud.remove()


def _record(model, x, t):
    """Concatenations of feature maps along channels, and the input channels each conv/norm layer saw, by width.
    A probe: it runs where the model is (ns.run) and returns only what it saw."""
    import torch
    import torch.nn as nn
    cats, seen = [], []
    real = {name: getattr(torch, name) for name in ("cat", "concat", "concatenate")}

    def recorder(fn):
        def wrapped(tensors, dim=0, *args, **kwargs):
            dim = kwargs.pop("axis", dim)           # torch.cat(tensors, axis=1) is allowed too
            out = fn(tensors, dim, *args, **kwargs)
            if out.dim() == 4 and dim in (1, -3) and len(tensors) >= 2:
                same = any(a.shape == b.shape and torch.equal(a, b) for i, a in enumerate(tensors) for b in tensors[i + 1:])
                blank = any(a.numel() and bool(a.amax() == a.amin()) for a in tensors)   # zeros for a skip, say
                cats.append((out.shape[-1], [x.shape[1] for x in tensors], out.shape[1], same, blank))
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
    missing = sorted({28, 14, 7} - {width for width, *_ in cats}, reverse=True)   # the text's rule, as stated
    assert not missing, (f"no skip connection is concatenated at {', '.join(map(str, missing))} pixels: the decoder "
                         "should concatenate an encoder feature map at every resolution (28, 14 and 7).")
    for width, parts, total, same, blank in cats:
        assert not same, (f"at {width} pixels a feature map is concatenated with itself: the skip should come from "
                          "the encoder (before the middle block), not be the decoder's own h.")
        assert not blank, (f"at {width} pixels a concatenated part holds one value everywhere (zeros, say): the skip "
                           "should be the encoder's feature map at that resolution.")
        assert (width, total) in seen, \
            "a decoder block should take the concatenated feature maps as its input (more channels than either part)."


def test_concatenated_skips_reach_the_output(ns):
    """Each concatenation of feature maps feeds the decoder: changing any of its parts changes the output."""
    model = ns.run(_awake, _model(ns))
    found = ns.run(_unused_concatenations, model, torch.randn(2, 1, 28, 28), torch.tensor([10, 20]))
    for width, channels, part in found:
        raise AssertionError(
            f"at {width} pixels feature maps of {' and '.join(map(str, channels))} channels are concatenated, "
            f"but the result never reaches the output (changing its part {part + 1} changes nothing): the block "
            "after it should take torch.cat([h, skip], dim=1) itself.")


def _unused_concatenations(model, x, t):
    """The channel concatenations of 4-d feature maps with a part that does not affect the output (noise added to
    that part alone changes nothing): (width, channels of the parts, index of the part). A probe (ns.run)."""
    import torch
    real = {name: getattr(torch, name) for name in ("cat", "concat", "concatenate")}
    seen, target, count = [], [None], [0]

    def recorder(fn):
        def wrapped(tensors, dim=0, *args, **kwargs):
            dim = kwargs.pop("axis", dim)           # torch.cat(tensors, axis=1) is allowed too
            if len(tensors) >= 2 and all(isinstance(a, torch.Tensor) and a.dim() == 4 for a in tensors) \
                    and dim in (1, -3):
                if target[0] is None:
                    seen.append((tensors[0].shape[-1], [a.shape[1] for a in tensors]))
                elif target[0][0] == count[0]:
                    j = target[0][1]
                    noise = torch.randn(tensors[j].shape, generator=torch.Generator().manual_seed(0))
                    tensors = list(tensors)
                    tensors[j] = tensors[j] + noise.to(tensors[j]) * (tensors[j].float().std().item() + 1e-3)
                count[0] += 1
            return fn(tensors, dim, *args, **kwargs)
        return wrapped

    def run():
        for name, fn in real.items():
            setattr(torch, name, recorder(fn))
        count[0] = 0
        try:
            with torch.no_grad():
                return model(x, t)
        finally:
            for name, fn in real.items():
                setattr(torch, name, fn)

    was_training = model.training
    model.eval()
    try:
        plain = run()
        unused = []
        for i, (width, channels) in enumerate(seen):
            for j in range(len(channels)):
                target[0] = (i, j)
                if torch.allclose(run(), plain, rtol=1e-5, atol=1e-6):
                    unused.append((width, channels, j))
    finally:
        model.train(was_training)
    return unused


def test_time_reaches_every_resolution(ns):
    """t reaches the network directly at every resolution of the encoder and of the decoder (each residual block
    adds its projection of the time embedding)."""
    model = ns.run(_awake, _model(ns))
    calls = ns.run(_where_time_enters, model, torch.randn(2, 1, 28, 28), torch.tensor([10, 20]),
                   torch.tensor([700, 900]))
    widths = [width for width, _ in calls]
    bottom = min(widths)
    first, last = widths.index(bottom), len(widths) - 1 - widths[::-1].index(bottom)
    places = {("on the way down", w) for i, (w, entered) in enumerate(calls) if entered and i < first and w > bottom}
    places |= {("on the way up", w) for i, (w, entered) in enumerate(calls) if entered and i > last and w > bottom}
    places |= {("at the bottom", w) for w, entered in calls if entered and w == bottom}
    sizes = sorted({w for w in widths if w > bottom}, reverse=True)
    wanted = ([("on the way down", w) for w in sizes] + [("at the bottom", bottom)]
              + [("on the way up", w) for w in sizes[::-1]])
    missing = [place for place in wanted if place not in places]
    assert not missing, ("the time step t does not reach the network " + ", ".join(f"{side} at {w} pixels" for side, w
                         in missing) + ": every residual block should add its projection of the time embedding, in "
                         "the encoder, the middle and the decoder.")


def _where_time_enters(model, x, t1, t2):
    """Where t enters the network directly. With the output of every convolution frozen at its value for t1, the
    input of a convolution run with t2 differs from its input for t1 only where t joins between the convolutions
    before it and this one. Returns (width of the input, t joined?) for each call of a 2-d convolution, in order.
    A probe (ns.run)."""
    import torch
    import torch.nn as nn
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    inputs, outputs, calls = [], [], []

    def first_run(m, inp, out):
        inputs.append(inp[0].detach().clone())
        outputs.append(out.detach().clone())

    def second_run(m, inp, out):
        i = len(calls)
        a, b = inputs[i], inp[0].detach()
        if a.dim() == 4:
            calls.append((a.shape[-1], a.shape != b.shape or not torch.allclose(a, b, rtol=1e-5, atol=1e-6)))
        else:
            calls.append((None, False))
        return outputs[i]

    was_training = model.training
    model.eval()
    try:
        for hook, t in ((first_run, t1), (second_run, t2)):
            handles = [m.register_forward_hook(hook) for m in convs]
            try:
                with torch.no_grad():
                    model(x, t)
            finally:
                for h in handles:
                    h.remove()
    finally:
        model.train(was_training)
    return [(w, entered) for w, entered in calls if w is not None]


def test_every_parameter_gets_a_gradient(ns):
    """Every parameter gets a gradient (no unused layers)."""
    unused = ns.run(_without_gradient, _model(ns), torch.randn(4, 1, 28, 28), torch.randint(0, 1000, (4,)))
    assert not unused, f"these parameters get no gradient (unused layers?): {', '.join(unused[:5])}"


def _without_gradient(model, x, t):
    """The parameters that get no finite gradient from a loss on the output. A probe (ns.run)."""
    import torch
    model(x, t).pow(2).mean().backward()
    return [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]


def test_keeps_its_arguments(ns):
    """The U-Net and sinusoidal_embedding leave x and t unchanged."""
    t = torch.tensor([0, 5, 999])
    probes.assert_keeps_its_arguments(ns, "sinusoidal_embedding(t, dim)", ns["sinusoidal_embedding"], t=t, dim=32)
    probes.assert_keeps_its_arguments(ns, "the U-Net's forward(x, t)", _model(ns), x=torch.randn(3, 1, 28, 28), t=t)


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
