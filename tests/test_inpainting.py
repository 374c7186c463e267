"""In-painting: the usual reverse step for unknown pixels, q(x_{t-1} | x_0) for known ones."""
import torch

from grader import probes
from grader import reference as ref
from grader import standins

PART = "inpainting"


def _setup(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    mask = torch.rand(n, 1, 28, 28, generator=g) < 0.5
    return x0, mask


def test_step_matches_reference(ns):
    """One in-painting step: the reverse step for unknown pixels, q(x_{t-1} | x_0) for known ones, with the same z."""
    d = ns["Diffusion"]()
    x0, mask = _setup()
    g = torch.Generator().manual_seed(1)
    x_t, eps, noise, noise_known = (torch.randn(4, 1, 28, 28, generator=g) for _ in range(4))
    t = torch.tensor([999, 300, 1, 0])
    out = ns["inpaint_step"](d, ns.standin("ConstantModel", eps), x_t, t, x0, mask, noise, noise_known)
    assert out.shape == x0.shape, "inpaint_step should return a tensor of the shape of x_t."
    unknown = ref.p_sample(eps, x_t, t, noise)
    assert ref.allclose(out.double()[~mask], unknown[~mask], atol=1e-4), \
        "unknown pixels should come from the usual reverse step p_sample_step(model, x_t, t, noise)."
    known = ref.q_sample(x0, (t - 1).clamp(min=0), noise_known)
    known[3] = x0[3].double()
    assert ref.allclose(out.double()[mask], known[mask], atol=1e-4), \
        "known pixels should be x_{t-1} ~ q(x_{t-1} | x0) made with noise_known, and x0 itself after the last step."


def test_step_any_shapes(ns):
    """inpaint_step works for images of any channels and a mask of any shape broadcastable to x_t."""
    d = ns["Diffusion"]()
    g = torch.Generator().manual_seed(8)
    x_t, eps, noise, noise_known, x0 = (torch.randn(2, 3, 6, 6, generator=g) for _ in range(5))
    t = torch.tensor([500, 0])
    full = torch.rand(2, 3, 6, 6, generator=g) < 0.5
    for mask in (full, full[:, :1], full[:1, :1], full[0, 0]):
        out = ns["inpaint_step"](d, ns.standin("ConstantModel", eps), x_t, t, x0, mask, noise, noise_known)
        want = torch.where(mask, ref.q_sample(x0, (t - 1).clamp(min=0), noise_known), ref.p_sample(eps, x_t, t, noise))
        want[1] = torch.where(mask, x0.double(), want)[1]
        assert ref.allclose(out.double(), want, atol=1e-4), \
            (f"inpaint_step with images of shape (2, 3, 6, 6) and a mask of shape {tuple(mask.shape)} gave "
             f"{'a tensor of shape ' + str(tuple(out.shape)) if out.shape != x_t.shape else 'wrong values'}: the "
             "mask may have any shape that broadcasts to x_t.")


def test_keeps_its_arguments(ns):
    """inpaint_step and inpaint leave their tensor arguments unchanged."""
    d = ns["Diffusion"]()
    x0, mask = _setup(4, 6)
    g = torch.Generator().manual_seed(7)
    x_t, eps, noise, noise_known = (torch.randn(4, 1, 28, 28, generator=g) for _ in range(4))
    probes.assert_keeps_its_arguments(
        ns, "inpaint_step(diffusion, model, x_t, t, x0, mask_known, noise, noise_known)", ns["inpaint_step"],
        diffusion=d, model=ns.standin("ConstantModel", eps), x_t=x_t, t=torch.tensor([999, 300, 1, 0]), x0=x0,
        mask_known=mask, noise=noise, noise_known=noise_known)
    small_x0, small_mask = x0[..., :8, :8].clone(), mask[..., :8, :8].clone()
    probes.assert_keeps_its_arguments(ns, "inpaint(diffusion, model, x0, mask_known)", ns["inpaint"], diffusion=d,
                                      model=ns.standin("ConstantModel", torch.zeros(1)), x0=small_x0,
                                      mask_known=small_mask)


def test_all_known_returns_input(ns):
    """With every pixel known, in-painting returns the known image."""
    x0, _ = _setup(2, 2)
    out = ns["inpaint"](ns["Diffusion"](), ns.standin("ConstantModel", torch.zeros(1)), x0, torch.ones_like(x0, dtype=torch.bool),
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x0), "with every pixel known, inpaint should return x0 exactly."


def test_all_unknown_equals_sample(ns):
    """With no pixel known, in-painting is the ordinary sampler (same noise, same order)."""
    d = ns["Diffusion"]()
    model = standins.GaussianDenoiser(0.5)
    x0, _ = _setup(2, 3)
    a = ns["inpaint"](d, model, x0, torch.zeros_like(x0, dtype=torch.bool), generator=torch.Generator().manual_seed(8))
    b = d.sample(model, x0.shape, generator=torch.Generator().manual_seed(8))
    assert ref.allclose(a, b, atol=1e-5), \
        "with nothing known, inpaint should give the same images as sample with the same seed (same order of draws)."


def test_seeded_completion_is_reproducible(ns):
    """A seeded completion does not depend on torch's global random state (all noise comes from the generator)."""
    # The model mixes pixels, so noise on the known pixels reaches the unknown ones.
    d, model = ns["Diffusion"](), ns.standin("MixingModel")
    x0, mask = _setup(2, 6)
    x0, mask = x0[..., :8, :8].clone(), mask[..., :8, :8].clone()
    outs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        outs.append(ns["inpaint"](d, model, x0, mask, generator=torch.Generator().manual_seed(3)))
    assert all(out.shape == x0.shape for out in outs), "inpaint should return a tensor of the shape of x0."
    gap = (outs[0].double() - outs[1].double()).abs().max().item()
    assert gap <= 1e-6, (
        f"inpaint with the same seeded generator gave different completions (largest difference {gap:.3g}) when only "
        "torch's global random state differed: draw every noise of in-painting, the known part's too, with "
        "randn(shape, generator, device).")


def test_known_pixels_kept_and_oracle_completes(ns):
    """Known pixels are kept, and an oracle model completes the rest."""
    x0, mask = _setup(3, 4)
    out = ns["inpaint"](ns["Diffusion"](), standins.OracleModel(x0), x0, mask, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[mask], x0[mask]), "the known pixels of the result should equal x0 exactly."
    assert ref.allclose(out, x0, atol=1e-3), "with a model that knows x0, the completion should be x0."


def test_mask_broadcasts(ns):
    """A mask of shape (1, 1, H, W) applies to every image of the batch."""
    x0, _ = _setup(3, 5)
    mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    mask[..., :14, :] = True
    out = ns["inpaint"](ns["Diffusion"](), ns.standin("ConstantModel", torch.zeros(1)), x0, mask,
                        generator=torch.Generator().manual_seed(2))
    assert out.shape == x0.shape and torch.equal(out[:, :, :14], x0[:, :, :14]), \
        "a mask of shape (1, 1, H, W) should apply to every image of the batch."
