"""The training runner behind `make train` and `make bench QUALITY=1`: snapshots by training time, a time budget."""
import inspect

import torch

from grader.cells import REFERENCE, load
from tools import bench, experiments, results
from tools import train as training


def test_snapshots_and_budget(tmp_path):
    ns = load(REFERENCE)
    images = torch.rand(128, 1, 28, 28) * 2 - 1    # one batch of 128 per epoch
    torch.manual_seed(0)
    model = ns["UNet"](base_channels=8, time_emb_dim=16)
    ema, log = training.run(ns, model, images, use_bf16=False, epochs=1000, minutes=2 / 60, snapshot_every=0.5,
                            snapshot_dir=tmp_path / "snaps", output=tmp_path / "final.pt")
    assert len(log["losses"]) == log["steps"] and all(isinstance(v, float) for v in log["losses"])
    assert log["seconds"] >= 2 and log["steps"] < 1000, "the budget, not the epochs, should end the run"
    minutes = [s["minutes"] for s in log["snapshots"]]
    assert minutes == sorted(minutes) and log["snapshots"][-1]["step"] == log["steps"], "the end of the run is saved"
    saved = torch.load(log["snapshots"][0]["path"], weights_only=True)
    assert set(saved["state_dict"]) == set(model.state_dict())
    rebuilt, losses = ns["load_checkpoint"](str(tmp_path / "final.pt"))
    assert losses == log["losses"], "a run stopped by its budget keeps its losses"
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), ema.state_dict().values()))


def test_passes_its_loss_fn_on(tmp_path):
    ns = load(REFERENCE)
    calls = []

    def loss_fn(diffusion, model, x0):
        calls.append(x0.shape)
        return ns["diffusion_loss"](diffusion, model, x0)

    batch = inspect.signature(ns["train"]).parameters["batch_size"].default
    _, log = training.run(ns, ns["UNet"](base_channels=8, time_emb_dim=16), torch.rand(2 * batch, 1, 28, 28) * 2 - 1,
                          use_bf16=False, epochs=1, loss_fn=loss_fn)
    assert len(calls) == log["steps"] == len(log["losses"]) == 2, "every step's loss comes from the given loss_fn"


def test_runs_to_the_end_without_budget(tmp_path):
    ns = load(REFERENCE)
    _, log = training.run(ns, ns["UNet"](base_channels=8, time_emb_dim=16), torch.rand(256, 1, 28, 28) * 2 - 1,
                          use_bf16=False, epochs=2, snapshot_every=1000, snapshot_dir=tmp_path)
    batch = inspect.signature(ns["train"]).parameters["batch_size"].default
    assert log["steps"] == len(log["losses"]) == 2 * (256 // batch)
    assert [s["step"] for s in log["snapshots"]] == [log["steps"]], "the end of a run is always saved"


def _run(model, precision, seed, passes_at, fids, **changes):
    snaps = [{"minutes": 1.0 + i, "step": 100 * (i + 1), "confidence": 0.9, "max_class_fraction": 0.1, "fid_256": fid,
              "passes": fid <= 100} for i, fid in enumerate(fids)]
    return {"model": model, "precision": precision, "seed": seed, "recipe": changes, "unet": {}, "minutes_budget": 10,
            "steps": 100 * len(fids), "minutes": float(len(fids)), "steps_per_s": 10.0, "images_per_s": 320.0,
            "minutes_to_pass": passes_at, "steps_to_pass": passes_at and int(100 * passes_at), "minutes_to_good": None,
            "snapshots": snaps}


REPORT = {
    "speed": {"device": "cpu", "threads": 2, "torch": "x", "ceiling_gflops": {"float32": {"median": 2.0, "min": 1.0, "max": 3.0}},
              "models": {name: {"parameters": 10, "forward_gflops_per_image": 0.5, "precision": "bfloat16",
                                "train_images_per_s": {"float32": {"median": 2.0, "min": 1.0, "max": 3.0},
                                                       "bfloat16": {"median": 4.0, "min": 3.0, "max": 5.0}},
                                "train_gflops_per_s": {"float32": 3.0, "bfloat16": 6.0},
                                "sampling_64x1000_s": {"median": 2.0, "min": 1.0, "max": 3.0}} for name in ("ours", "peer")},
              "ratios": {"peer": {"train_best_vs_best": 1.0, "train_float32": 1.5, "train_bfloat16": 1.0, "sampling": 1.0}}},
    "quality": {"fid_1024_real_training_digits": 6.0, "good_fid_1024": 12.0, "pass": "x",
                "runs": [_run("ours", "bfloat16", 0, 2.0, [120, 90, 75, 70]),
                         _run("ours", "bfloat16", 1, 3.0, [130, 110, 79, 60]),
                         _run("ours", "float32", 0, 4.0, [150, 120, 105, 95]),
                         _run("peer", "bfloat16", 0, None, [900, 800])]},
    "experiments": {"faster": [_run("ours", "bfloat16", 0, 2.0, [101, 99], lr=0.004)]}}


def test_benchmark_report_renders():
    text = results.markdown(REPORT)
    assert "| training images/s, float32 | 2.0 (1.0-3.0) | 2.0 (1.0-3.0) (ours 1.50x) |" in text
    assert "| ours | bfloat16 | 1 | 10.0 | 320 | 3.0 (300) | 4.0, 60.0 |" in text
    assert "| peer | bfloat16 | 0 | 10.0 | 320 | not within 10 | 2.0, 800.0 |" in text
    assert "| ours | float32 | 0 | 4.0 | 400 | 0.900 | 0.100 | 95.0 | - | pass |" in text
    assert "| faster | lr=0.004 | bfloat16 | 0 | 10.0 | 320 | 2.0 (200) | 2.0, 99.0 |" in text


def test_recipe_figures_are_the_worst_seed():
    """PASS_STEPS: every later snapshot passes with margin (FID <= 80) in every seed; minutes to pass: the worst seed."""
    figures = results.recipe_figures(REPORT)
    assert figures["pass_steps"] == 500, "seed 0 passes with margin from step 300, seed 1 from step 300 (79)"
    assert figures["bfloat16"]["minutes_to_pass"] == 3.0 and figures["bfloat16"]["steps_to_pass"] == 300
    assert figures["float32"]["minutes_to_pass"] == 4.0 and figures["bfloat16"]["steps_per_s"] == 10.0
    assert abs(figures["bfloat16"]["minutes_to_pass_steps"] - 500 / 10 / 60) < 1e-9


def test_benchmark_report_renders_the_extensions(tmp_path):
    sweep = [{"sampler": "DDIM", "steps": 10, "seconds_256": 3.0, "fid_256": 90.0, "confidence": 0.8},
             {"sampler": "DDIM", "steps": 100, "seconds_256": 30.0, "fid_256": 60.0, "confidence": 0.9},
             {"sampler": "Algorithm 2", "steps": 1000, "seconds_256": 300.0, "fid_256": 55.0, "confidence": 0.9}]
    report = {"sampler_sweep": sweep,
               "objective": {"minutes": 9.0, "rows": [{"objective": "L_simple (eq. 14)", "steps": 2000, "fid_256": 150.0,
                                                       "confidence": 0.8, "max_class_fraction": 0.15}]},
               "guidance": [{"w": 4.0, "samples": 500, "accuracy": 0.99, "confidence": 0.97, "fid": 70.0}]}
    text = results.markdown(report)
    assert "| Algorithm 2 | 1000 | 300 | 55.0 | 0.900 |" in text
    assert "| L_simple (eq. 14) | 2000 | 150.0 | 0.800 | 0.150 |" in text
    assert "| 4 | 500 | 0.990 | 0.970 | 70.0 |" in text
    experiments.plot_sweep(sweep, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_epoch_time_runs_one_epoch_of_train():
    ns = dict(load(REFERENCE, extra=("helpers",)))
    ns["load_images"] = lambda train=True: (torch.rand(96, 1, 28, 28) * 2 - 1, torch.zeros(96, dtype=torch.long))
    ns["bf16_supported"] = lambda device: False
    e = bench.epoch_time(ns, torch.device("cpu"))
    batch = inspect.signature(ns["train"]).parameters["batch_size"].default
    assert e["batch_size"] == batch and e["steps"] == 96 // batch and e["precision"] == "float32"
    assert e["seconds"] > 0 and abs(e["minutes_for_20_epochs"] - 20 * e["seconds"] / 60) < 1e-9


def _tiny_run(ns, tmp_path, **kwargs):
    torch.manual_seed(0)
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    return ns["train"](ns["UNet"](base_channels=8, time_emb_dim=16), ns["Diffusion"](), images, batch_size=16,
                       progress=False, checkpoint_path=str(tmp_path / "model.pt"), **kwargs)


def test_train_stops_when_on_step_says_so_and_saves(tmp_path):
    """on_step(step, loss, ema_model) sees every step; returning True ends the run, which is saved as usual."""
    ns = load(REFERENCE)
    seen = []
    _, losses = _tiny_run(ns, tmp_path, max_steps=50, on_step=lambda step, loss, ema: seen.append(step) or step == 7)
    assert seen == list(range(1, 8)) and len(losses) == 7
    assert len(ns["load_checkpoint"](str(tmp_path / "model.pt"))[1]) == 7


def test_train_keeps_to_its_minutes(tmp_path):
    ns = load(REFERENCE)
    _, losses = _tiny_run(ns, tmp_path, max_steps=100000, minutes=1 / 60)
    assert 0 < len(losses) < 100000, "a time budget of one second should end the run"


def test_train_resumes_where_it_stopped(tmp_path):
    """Two sittings with resume=True train the same total of steps as one: weights, optimizer, EMA and losses go on."""
    ns = load(REFERENCE)
    _, first = _tiny_run(ns, tmp_path, max_steps=12, on_step=lambda step, loss, ema: step == 5)
    state = torch.load(tmp_path / "model_training.pt", weights_only=True)
    assert len(first) == 5 and state["ema_updates"] == 5
    ema, losses = _tiny_run(ns, tmp_path, max_steps=12, resume=True)
    assert len(losses) == 12 and losses[:5] == first, "the second sitting goes on from step 5 to the total of 12"
    assert torch.load(tmp_path / "model_training.pt", weights_only=True)["ema_updates"] == 12
    optimizer_steps = torch.load(tmp_path / "model_training.pt", weights_only=True)["states"][1]["state"][0]["step"]
    assert int(optimizer_steps) == 12, "the optimizer's state (its step count, its moments) is carried over"
    _, fresh = _tiny_run(ns, tmp_path, max_steps=3, resume=False)
    assert len(fresh) == 3, "resume=False starts afresh"


def test_train_saves_when_interrupted(tmp_path):
    ns = load(REFERENCE)

    def interrupt(step, loss, ema):
        if step == 4:
            raise KeyboardInterrupt

    _, losses = _tiny_run(ns, tmp_path, max_steps=50, on_step=interrupt)
    assert len(losses) == 4 and len(ns["load_checkpoint"](str(tmp_path / "model.pt"))[1]) == 4


def test_progress_warns_when_training_is_slow(capsys, monkeypatch):
    """After warm-up and 100 steps, a rate below the threshold prints the likely cause and the fix, once."""
    ns = load(REFERENCE)
    clock = iter(range(0, 10 ** 6, 1))                        # one second per call of time.time: 1 step/s
    monkeypatch.setattr(ns["Progress"].__init__.__globals__["time"], "time", lambda: float(next(clock)))
    bar = ns["Progress"](0, 300, pass_steps=200, slow_below=7.0 / 3, enabled=False, parameters=1_421_089)
    for step in range(1, 201):
        assert not bar.update(step, [0.1])
    out = capsys.readouterr().out
    assert out.count("far slower") == 1 and "set_num_threads(1)" in out and "resume=True" in out
    # a student's wider U-Net (base_channels=32 here) is the other usual cause: the warning names its size
    assert "yours has 1,421,089" in out and "0.4 million" in out


def test_progress_times_the_rate_after_warm_up(capsys, monkeypatch):
    """A slow first step (torch.compile compiles in it, for about 50 s) does not make the warning misfire."""
    ns = load(REFERENCE)
    now = [0.0]
    monkeypatch.setattr(ns["Progress"].__init__.__globals__["time"], "time", lambda: now[0])
    bar = ns["Progress"](0, 300, pass_steps=200, slow_below=7.0 / 3, enabled=False)
    for step in range(1, 201):
        now[0] += 50.0 if step == 1 else 0.1                  # compiling, then 10 steps/s
        assert not bar.update(step, [0.1])
    assert "far slower" not in capsys.readouterr().out


def test_resuming_another_model_says_what_to_do(tmp_path):
    ns = load(REFERENCE)
    _tiny_run(ns, tmp_path, max_steps=2)
    torch.manual_seed(0)
    try:
        ns["train"](ns["UNet"](base_channels=16, time_emb_dim=16), ns["Diffusion"](), torch.rand(64, 1, 28, 28),
                    batch_size=16, max_steps=4, progress=False, checkpoint_path=str(tmp_path / "model.pt"), resume=True)
    except RuntimeError as err:
        assert "resume=False" in str(err)
    else:
        raise AssertionError("resuming a run of another model should fail with what to do")
