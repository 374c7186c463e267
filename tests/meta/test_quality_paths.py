"""The sample-quality machinery itself: the metric, and both sampling paths of the grader."""
import torch

from grader import quality, sampling
from grader.cells import MODEL, REFERENCE, ROOT, load


def test_frechet_distance_of_identical_and_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    assert abs(quality.frechet_distance(a, a)) < 1e-6
    assert abs(quality.frechet_distance(a, a + 2.0) - 8 * 4.0) < 1e-6          # |mu_a - mu_b|^2 = 8 * 2^2
    assert abs(quality.frechet_distance(a, 3.0 * a) - 8 * 4.0) < 0.5           # (1 - 3)^2 per unit variance


def test_gpu_setting_runs_the_full_ancestral_sampler():
    """The GPU setting samples with all 1000 steps of Algorithm 2; run it here on a few digits, on the CPU."""
    model = sampling.load_model(load(REFERENCE, "unet"), ROOT / MODEL, torch.device("cpu"))
    samples = sampling.sample(model, torch.device("cpu"), n=8, steps=1000)
    assert samples.shape == (8, 1, 28, 28) and torch.isfinite(samples).all()
    probs = quality.embed(quality.load_classifier(), samples)[1]
    assert probs.max(dim=1).values.mean() > 0.8, "the reference model's full-sampler digits should be recognisable"


def test_stored_gaussian_of_the_test_digits_is_current():
    """data/mnist_test_gaussian.pt, which the grader compares samples with, is the classifier's on MNIST's test set."""
    stored_mean, stored_covariance = quality.load_test_gaussian()
    mean, covariance = quality.test_gaussian(quality.load_classifier())
    assert torch.allclose(stored_mean, mean, atol=1e-6) and torch.allclose(stored_covariance, covariance, atol=1e-6), \
        "data/mnist_test_gaussian.pt is stale: run tools/train_classifier.py (or quality.save_test_gaussian)"


def test_the_pass_rule_and_its_report():
    """judge() passes a model at the thresholds and names the figure that fails; a model that does not denoise real
    digits fails every check; report() says pass, pass narrowly or not yet, with the figures."""
    th = quality.THRESHOLDS
    good = {"denoising_loss": 0.02, "confidence": 0.92, "max_class_fraction": 0.13, "fid": 45.0}
    assert quality.judge(good) == dict.fromkeys(quality.CHECKS) and quality.passes(good)
    edge = {"denoising_loss": th["denoising_loss"], "confidence": th["confidence"],
            "max_class_fraction": th["max_class_fraction"], "fid": th["fid"]["cpu"]}
    assert quality.passes(edge)
    assert "PASSES with margin" in quality.report(good) and "narrowly" in quality.report(edge)
    far = {**good, "fid": 126.0}
    verdict = quality.judge(far)
    assert [k for k, v in verdict.items() if v] == ["fid"] and "126" in verdict["fid"] and "100" in verdict["fid"]
    assert "NOT YET" in quality.report(far) and "126" in quality.report(far)
    memoriser = {**good, "denoising_loss": 0.5}
    assert all("0.500" in why for why in quality.judge(memoriser).values())
    nan = {**good, "fid": float("nan")}
    assert not quality.passes(nan), "a figure that is not a number fails"


def test_a_compiled_models_checkpoint_saves_and_loads(tmp_path):
    """torch.compile(model) names its weights "_orig_mod." + the model's: save_checkpoint saves the model inside it,
    and a checkpoint with such names (as a save_checkpoint of its own may write) loads in the notebook's
    load_checkpoint and in the grader (grader/sampling.py) into the same network."""
    ns = load(REFERENCE)
    torch.manual_seed(0)
    model = ns["UNet"](base_channels=8, time_emb_dim=16).eval()
    compiled = torch.compile(model)                         # compiles nothing until it is called
    assert all(name.startswith("_orig_mod.") for name in compiled.state_dict())
    saved, prefixed = tmp_path / "saved.pt", tmp_path / "prefixed.pt"
    ns["save_checkpoint"](compiled, str(saved))
    assert set(torch.load(saved, weights_only=True)["state_dict"]) == set(model.state_dict())
    torch.save({"config": model.config, "state_dict": compiled.state_dict(), "losses": [1.0]}, prefixed)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 500])
    with torch.no_grad():
        want = model(x, t)
        for path in (saved, prefixed):
            assert torch.equal(ns["load_checkpoint"](str(path))[0](x, t), want)
            assert torch.equal(sampling.load_model(load(REFERENCE, "unet"), path, torch.device("cpu"))(x, t), want)
