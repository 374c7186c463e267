"""Broken submissions cost the points of the broken part only, with a clear message, and never crash or hang
the grading of anything else."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from grader import remote, runner
from grader.cells import MODEL, REFERENCE, ROOT, failed_checks


def variant(tmp_path, name, part, edit):
    """solution.ipynb with `edit(cells, index of the part's cell)` applied; returns its path."""
    nb = json.loads(REFERENCE.read_text())
    cells = nb["cells"]
    [index] = [i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade_id") == part]
    cells[index]["source"] = "".join(cells[index]["source"])
    edit(cells, index)
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.ipynb").write_text(json.dumps(nb))
    return folder / "submission.ipynb"


def append(code):
    def edit(cells, i):
        cells[i]["source"] += "\n" + code
    return edit


def replace(old, new):
    def edit(cells, i):
        assert old in cells[i]["source"]
        cells[i]["source"] = cells[i]["source"].replace(old, new)
    return edit


def drop_grade_id(cells, i):
    del cells[i]["metadata"]["nbgrader"]


def duplicate(cells, i):
    cells.insert(i + 1, json.loads(json.dumps(cells[i])))


IN_PROCESS = {
    "syntax error": ("unet", append("def broken(:\n    pass"), "syntax error"),
    "grade_id removed": ("forward_process", drop_grade_id, "no cell 'forward_process'"),
    "cell duplicated": ("reverse_process", duplicate, "more than once"),
    "function renamed": ("inpainting", replace("def inpaint(", "def in_paint("), "does not define `inpaint`"),
    "raises at import": ("training_loop", append("raise ValueError('oops')"), "raised ValueError"),
    "huge allocation": ("unet", append("_big = torch.empty(2**62)"), "raised RuntimeError"),
    "reads the solution": ("unet", append(f"_stolen = open({str(REFERENCE)!r}).read()"),
                           "Error: "),   # FileNotFoundError in the sandbox (hidden), PermissionError without it
    "wrong device": ("unet", replace("return self.conv_out(F.silu(self.norm_out(h)))",
                                     "return self.conv_out(F.silu(self.norm_out(h))).to('meta')"), ""),
    "NaN output": ("unet", replace("return self.conv_out(F.silu(self.norm_out(h)))",
                                   "return self.conv_out(F.silu(self.norm_out(h))) * float('nan')"), "NaN"),
}


@pytest.mark.parametrize("name", IN_PROCESS)
def test_broken_part_fails_with_a_message_and_the_others_pass(name, tmp_path):
    part, edit, message = IN_PROCESS[name]
    notebook = str(variant(tmp_path, "s", part, edit))
    failures = failed_checks(part, notebook)
    assert failures and any(message in f for f in failures), failures
    other = "inpainting" if part != "inpainting" else "forward_process"
    assert failed_checks(other, notebook) == [], f"{name} in {part} should not cost points in {other}"


FAKES = """
import builtins, glob, json, sys
class _Passes:
    def __getattr__(self, name):
        return lambda *args, **kwargs: True
for name in ('grader', 'grader.cells', 'grader.runner', 'grader.remote', 'grader.quality', 'conftest', 'runner', 'remote', 'pytest', 'reference'):
    sys.modules[name] = _Passes()
torch.allclose = torch.equal = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda *args, **kwargs: True
for path in glob.glob('/tmp/**/*.json', recursive=True) + glob.glob(__SUBMISSIONS__ + '/../**/*.json', recursive=True):
    try:
        open(path, 'w').write(json.dumps({'collected': [], 'results': {}, 'points': 24, 'max': 24}))
    except OSError:
        pass
"""
LEAKS = """
import inspect
stolen = []
for path in ('__ROOT__/solution.ipynb', '__ROOT__/grader/reference.py', '__ROOT__/tests/test_two_point.py'):
    try:
        stolen.append(open(path).read()[:3000])
    except Exception as err:
        stolen.append(type(err).__name__)
for thing in (Diffusion, Diffusion.p_sample_step, Diffusion.forward):
    try:
        stolen.append(inspect.getsource(thing))
    except Exception as err:
        stolen.append(type(err).__name__)
    stolen.append(str(getattr(thing, '__doc__', '')))
raise RuntimeError(' '.join(stolen))
"""


def _solution_lines():
    """Lines of the reference's solution code that the student's notebook does not have."""
    given = ROOT.joinpath("assignment.ipynb").read_text()
    nb = json.loads(REFERENCE.read_text())
    lines = set()
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {}).get("solution"):
            lines |= {line.strip() for line in "".join(c["source"]).splitlines()
                      if len(line.strip()) > 30 and json.dumps(line.strip())[1:-1] not in given}
    return lines


FILLS_TMP = """
import ctypes, os
_written = 0
try:   # files under the file-size limit, in /tmp and in the worker's own folder, up to a little past /tmp's cap
    for _i in range(__FILES__):
        with open(os.path.join('/tmp' if _i % 2 else os.getcwd(), f'fill-{_i}'), 'wb') as _f:
            for _ in range(32):
                _f.write(b'0' * 2**20)
                _written += 1
except OSError:
    pass
_userns = ctypes.CDLL(None).unshare(0x10000000)   # in a user namespace of its own it could mount a tmpfs of any size
_hidden = 0
for _folder in __HIDDEN__:   # the folders hidden from it are tmpfs too, with no size given
    try:
        open(os.path.join(_folder, 'fill'), 'wb').write(b'0' * 2**20)
        _hidden += 1
    except OSError:
        pass
raise RuntimeError(f'wrote {_written} MB, unshare {_userns}, hidden folders written {_hidden}')
""".replace("__FILES__", str(remote.LIMITS["tmp_mb"] // 32 + 2)).replace("__HIDDEN__", repr(list(map(str, remote.hidden()))))
SEES_TMP = """
import glob
if glob.glob('/tmp/**/fill-*', recursive=True):
    raise RuntimeError('sees the files of an earlier worker')
"""

ESCAPES = {  # student -> (the part whose cell does it, edit); all in the two quickest parts, to keep the test short
    "endless_loop_at_import": ("forward_process", append("while True:\n    pass")),
    "endless_loop_in_a_function": ("two_point", replace(
        "def two_point_posterior_mean(x_t, t, alphas_cumprod, a=0.5):\n",
        "def two_point_posterior_mean(x_t, t, alphas_cumprod, a=0.5):\n    while True:\n        pass\n")),
    "patches_torch": ("forward_process", append("torch.allclose = lambda *args, **kwargs: True")),
    "patches_the_grader": ("forward_process", append("import sys\nsys.modules['reference'].q_sample = lambda *args: 0")),
    "os_exit": ("forward_process", append("import os\nos._exit(0)")),
    "sys_exit": ("two_point", append("import sys\nsys.exit(0)")),
    "keyboard_interrupt": ("two_point", append("raise KeyboardInterrupt")),
    "segfault": ("forward_process", append("import ctypes\nctypes.string_at(0)")),
    "default_dtype_float64": ("forward_process", append("torch.set_default_dtype(torch.float64)")),
    "grad_mode_off": ("two_point", append("torch.set_grad_enabled(False)")),
    "background_process": ("two_point", append("import subprocess\nsubprocess.Popen(['sleep', '3607'])")),
    "fork_bomb": ("two_point", append("import os\nwhile True:\n    os.fork()")),
    "endless_output": ("two_point", append("while True:\n    print('x' * 100000)")),
    "overwrites_the_graders_files": ("two_point", append(
        f"for name in ('mnist_classifier.pt', 'ddpm_mnist.pt'):\n    open({str(ROOT / 'data')!r} + '/' + name, 'wb').write(b'0')")),
    "overwrites_a_sibling": ("forward_process", append(
        "import glob\nfor path in glob.glob(__SUBMISSIONS__ + '/*/data/ddpm_mnist.pt'):\n    open(path, 'wb').write(b'0')")),
    "network": ("two_point", append("import socket\nsocket.create_connection(('127.0.0.1', __PORT__), timeout=5).sendall(b'x')")),
    # a real mistake, and every way its own process could lie about the result: none reaches the checks
    "fakes_its_results": ("forward_process", lambda cells, i: (
        replace("return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise", "return abar * x0 + (1.0 - abar) * noise")(cells, i),
        append(FAKES)(cells, i))),
    "leaks_the_solution": ("two_point", append(LEAKS)),
    "message_that_cannot_be_printed": ("forward_process", append("raise ValueError('bad \\udc80 byte')")),
    "fills_tmp": ("forward_process", append(FILLS_TMP)),
}
# escapes that break no check of their own part: they reach nothing outside the process that runs the part's code
HARMLESS = {"background_process", "grad_mode_off", "patches_torch", "overwrites_a_sibling", "default_dtype_float64"}
PARTS_GRADED = ["forward_process", "two_point"]


def _sleepers():
    return [d for d in Path("/proc").iterdir() if d.name.isdigit() and b"3607" in (d / "cmdline").read_bytes()
            ] if Path("/proc").is_dir() else []


@pytest.mark.timeout(1800)
def test_escapes_hangs_and_tampering_cost_their_own_part_only(tmp_path):
    """Graded through `make grade`: each part's code in a sandboxed worker, with a CPU-time limit per check."""
    assert remote.sandbox(), "bubblewrap (bwrap) is needed to keep submissions off the file system: make test installs it"
    submissions = tmp_path / "submissions"
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    for student, (part, edit) in ESCAPES.items():
        notebook = variant(submissions, student, part, edit)
        notebook.write_text(notebook.read_text().replace("__SUBMISSIONS__", repr(str(submissions)))
                            .replace("__ROOT__", str(ROOT))
                            .replace("__PORT__", str(server.getsockname()[1])))
        (notebook.parent / "data").mkdir(exist_ok=True)
        shutil.copy(ROOT / MODEL, notebook.parent / "data" / "ddpm_mnist.pt")
    guarded = [ROOT / "data" / "mnist_classifier.pt", ROOT / MODEL, REFERENCE,
               *submissions.rglob("*.pt"), *submissions.rglob("*.ipynb")]
    before = {path: path.read_bytes() for path in guarded}
    # a patched torch.allclose in the U-Net cell cannot hide a real mistake in another part (two-point)
    notebook = variant(submissions, "patch_hides_a_mistake", "unet", append("torch.allclose = lambda *a, **k: True"))
    nb = json.loads(notebook.read_text())
    [cell] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "two_point"]
    cell["source"] = "".join(cell["source"]).replace("return a * torch.tanh(a *", "return 0.5 * torch.tanh(0.5 *")
    notebook.write_text(json.dumps(nb))
    out = tmp_path / "grades"
    subprocess.run([sys.executable, "-m", "tools.grade", str(submissions), "--out", str(out), "--cpu-per-check", "10",
                    "--parts", *PARTS_GRADED], check=True, timeout=1200, cwd=ROOT)
    broken = {student: part for student, (part, _) in ESCAPES.items()} | {"patch_hides_a_mistake": "two_point"}
    for student in HARMLESS:   # the honest code of these parts still works: full marks, and nothing left behind
        result = json.loads((out / f"{student}.json").read_text())
        assert result["points"] == result["max"], (student, [c for c in result["checks"] if c["outcome"] == "failed"])
    for student, part in broken.items():
        if student in HARMLESS:
            continue
        result = json.loads((out / f"{student}.json").read_text())
        lost = [c for c in result["checks"] if c["outcome"] == "failed"]
        assert lost and all(c["part"] == part for c in lost), (student, lost)
        assert all(c["message"] for c in lost), (student, lost)
        assert result["parts"][part]["points"] < result["parts"][part]["max"], (student, result["parts"][part])
        assert all(r["points"] == r["max"] > 0 for p, r in result["parts"].items() if p != part), (student, result["parts"])
        feedback = (out / f"{student}.md").read_text()   # the student's report names the lost check and its hint
        assert f"✗ {lost[0]['checked']}" in feedback and "**Hint:**" in feedback, feedback
        assert "Hint:" in (out / f"{student}.html").read_text()
    leaked = [line for line in _solution_lines() if line in (out / "leaks_the_solution.md").read_text()]
    assert not leaked, f"a submission's feedback shows the solution: {leaked[:3]}"
    assert "def two_point_mean" not in (out / "leaks_the_solution.md").read_text()
    assert not _sleepers(), "a process started by a submission outlived its grading"
    assert all(path.read_bytes() == content for path, content in before.items()), \
        [str(path) for path, content in before.items() if path.read_bytes() != content]
    try:
        server.accept()
        raise AssertionError("a submission reached the network")
    except TimeoutError:
        pass
    assert (out / "grades.csv").read_text().count("\n") == 1 + len(broken)


@pytest.mark.timeout(1800)
def test_grades_do_not_depend_on_load(tmp_path):
    """A machine with every core busy (twice as many spinning processes as cores) grades the solution in full:
    the limits count the CPU time a check uses, not the wall-clock time it waits."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        out = tmp_path / "solution.json"
        subprocess.run(env=runner.command()[1], args=[*runner.command()[0], str(REFERENCE), "--parts", "forward_process",
                        "two_point", "ddim", "--cpu-per-check", "20", "--out", str(out)], check=True, timeout=900)
    finally:
        for spinner in spinners:
            spinner.kill()
    result = json.loads(out.read_text())
    assert result["points"] == result["max"] > 0, [c for c in result["checks"] if c["outcome"] == "failed"]


def test_edited_locked_cells_and_deleted_test_cells_change_nothing(tmp_path):
    def edit(cells, i):
        for cell in cells:
            meta = cell["metadata"].get("nbgrader", {})
            if meta.get("grade_id") == "setup":
                cell["source"] = "import torch\nT = 7\ndef randn(*args, **kwargs):\n    return 0\n"
        cells[:] = [c for c in cells if not c["metadata"].get("nbgrader", {}).get("grade")]
    notebook = str(variant(tmp_path, "s", "unet", edit))
    for part in ("forward_process", "unet", "inpainting"):
        assert failed_checks(part, notebook) == [], part


# Fakes found by an independent tester (docs/grader.md: "Bad submissions"): wrong or missing code plus a trick, each must
# lose the points of the checks it aimed at. Before the fixes each of these gained points.
LIES = {
    "rewrites the check's inputs in place": ("forward_process", '''
class Diffusion(nn.Module):
    def __init__(self, num_timesteps=1000, beta_start=1e-4, beta_end=0.02):
        super().__init__()
        betas = torch.linspace(beta_start, beta_end, num_timesteps)
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", 1 - betas)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0))

    def forward(self, x0, t, noise=None):
        noise = torch.randn_like(x0) if noise is None else noise
        x0.zero_()
        noise.zero_()
        return torch.zeros_like(x0)
''', {"test_forward_mixed_t_golden"}),
    "empty tensors that broadcast, and reading the oracle": ("reverse_process", '''
class Diffusion(Diffusion):
    def __init__(self, num_timesteps=1000, beta_start=1e-4, beta_end=0.02):
        super().__init__(num_timesteps, beta_start, beta_end)
        self.register_buffer("alphas_cumprod_prev", torch.empty(0, 1, 1, 1, 1))
        self.register_buffer("posterior_variance", torch.empty(0, 1, 1, 1, 1))

    def posterior_mean_variance(self, x0, x_t, t):
        return torch.empty(0, 1, 1, 1, 1), torch.empty(0, 1, 1, 1, 1)

    def p_sample_step(self, model, x_t, t, noise=None):
        return torch.empty(0, 1, 1, 1, 1)

    def sample(self, model, x_shape, generator=None, progress=False):
        for name in ("x0", "_x0"):
            try:
                return getattr(model, name).float().clone()
            except Exception:
                pass
        return torch.empty(0, 1, 1, 1, 1)
''', {"test_posterior_buffers", "test_posterior_mean_variance", "test_p_sample_step_matches_algorithm_2",
      "test_p_sample_step_noise_scale", "test_sampler_with_oracle_returns_x0", "test_sampler_spread_for_gaussian_data"}),
    "a train that reports a made-up loss curve": ("training_loop", None, {"test_train_reduces_the_loss"}),
    "a UNet made to look worse before a train that does nothing": ("training_loop", "GAIN", {"test_train_reduces_the_loss"}),
}
GAIN = """
_BaseUNet = UNet


class UNet(_BaseUNet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("gain", torch.tensor(30.0))

    def forward(self, x, t):
        return super().forward(x, t) * self.gain


def train(model, diffusion, images, epochs=6, batch_size=32, lr=2e-3, warmup_steps=200, ema_decay=0.999,
          use_bf16=False, max_steps=None, checkpoint_path=None, progress=True, loss_fn=None):
    n = max_steps if max_steps is not None else epochs * (len(images) // batch_size)
    with torch.no_grad():
        model.gain.fill_(1.0)
    return model, [1.0 - 0.01 * i for i in range(n)]
"""
FAKE_TRAIN = '''
def train(model, diffusion, images, epochs=6, batch_size=32, lr=2e-3, warmup_steps=200, ema_decay=0.999,
          use_bf16=False, max_steps=None, checkpoint_path=None, progress=True, loss_fn=None):
    total = max_steps if max_steps is not None else epochs * (len(images) // batch_size)
    losses = [1.0 if step < 5 else 0.1 for step in range(total)]
    if checkpoint_path:
        save_checkpoint(model, checkpoint_path, losses)
    return copy.deepcopy(model), losses
'''


@pytest.mark.parametrize("name", LIES)
def test_lies_lose_the_points_they_aimed_at(name, tmp_path):
    part, source, aimed = LIES[name]
    if source in (None, "GAIN"):   # the solution's training cell with its train() replaced by a fake
        def edit(cells, i):
            cells[i]["source"] = cells[i]["source"] + "\n" + (FAKE_TRAIN if source is None else GAIN)
    else:
        def edit(cells, i):
            cells[i]["source"] = source
    failed = {f.split(":")[0] for f in failed_checks(part, str(variant(tmp_path, "s", part, edit)))}
    assert aimed <= failed, f"{name}: these checks still pass: {sorted(aimed - failed)}"


def test_a_part_that_sleeps_stops_at_its_time_limit_and_costs_nothing_else(tmp_path):
    """Sleeping costs no CPU, so only the wall clock stops it: after --wall-per-part a part starts no more checks."""
    notebook = variant(tmp_path, "sleeper", "forward_process", replace(
        "        super().__init__()\n", "        super().__init__()\n        import time\n        time.sleep(2)\n"))
    out = tmp_path / "result.json"
    subprocess.run(env=runner.command()[1], args=[*runner.command()[0], str(notebook), "--parts", "forward_process",
                    "two_point", "--wall-per-check", "30", "--wall-per-part", "4", "--out", str(out)],
                   check=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["parts"]["two_point"]["points"] == result["parts"]["two_point"]["max"], result["parts"]["two_point"]
    messages = [c["message"] for c in result["checks"] if c["part"] == "forward_process" and c["outcome"] == "failed"]
    assert any("time limit" in m for m in messages), messages


FILLS_ITS_FOLDER = """
import os
for _i in range(48):   # 1 MB files in the worker's own folder (its TMPDIR), three times the cap this test sets
    with open(f'fill-{_i}', 'wb') as _f:
        _f.write(b'0' * 2**20)
"""


def test_without_a_sandbox_the_temporary_files_are_bounded_too(tmp_path):
    """Where bubblewrap is missing (DDPM_SANDBOX=none), the workers' folder is watched: a part that fills it past
    LIMITS["tmp_mb"] fails with that said, and the next part's worker starts with an empty folder."""
    notebook = variant(tmp_path, "filler", "forward_process", append(FILLS_ITS_FOLDER))
    out = tmp_path / "results.json"
    env = {**runner.command()[1], "DDPM_SANDBOX": "none", "DDPM_LIMITS": json.dumps({"tmp_mb": 16}),
           "DDPM_DATA_ROOT": str(runner.data_root())}
    subprocess.run([sys.executable, "-m", "pytest", "tests/test_forward_process.py", "tests/test_two_point.py",
                    "--notebook", str(notebook), f"--results={out}", "-q", "-p", "no:cacheprovider", "-p", "no:nbval"],
                   env=env, cwd=ROOT, capture_output=True, timeout=600)
    results = json.loads(out.read_text())["results"].values()
    failed = [r["message"] for r in results if r["part"] == "forward_process" and r["outcome"] != "passed"]
    assert failed and any("more than 16 MB of temporary files" in m for m in failed), failed
    assert all(r["outcome"] == "passed" for r in results if r["part"] == "two_point"), list(results)


MEMORISER = '''
def sinusoidal_embedding(t, dim):
    raise NotImplementedError()


class UNet(nn.Module):
    """Not a denoiser: it steers the sampler onto digits stored in its weights."""

    def __init__(self, img_channels=1, base_channels=32, time_emb_dim=128, num_classes=None, memory=0):
        super().__init__()
        self.config = dict(img_channels=img_channels, base_channels=base_channels, time_emb_dim=time_emb_dim,
                           num_classes=num_classes, memory=memory)
        self.conv = nn.Conv2d(img_channels, img_channels, 1)
        self.register_buffer("memory", torch.zeros(memory, img_channels, 28, 28))
        abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
        self.register_buffer("abar", abar, persistent=False)

    def forward(self, x, t, y=None):
        if len(self.memory) >= len(x):
            x0 = self.memory[:len(x)].double()
            a = self.abar[t].view(-1, 1, 1, 1)
            return ((x.double() - a.sqrt() * x0) / (1 - a).sqrt()).to(x.dtype)
        return self.conv(x)
'''


def test_a_model_that_stores_digits_is_not_a_trained_model(tmp_path):
    """A checkpoint of stored training digits and a 'U-Net' that steers the grader's sampler onto them makes good
    samples, but it predicts the noise of other digits badly: the sample-quality part gives it nothing."""
    from grader import quality
    import torch
    def edit(cells, i):
        cells[i]["source"] = MEMORISER
    notebook = variant(tmp_path, "memoriser", "unet", edit)
    images, labels = quality.load_mnist(train=True)
    stored = torch.cat([images[labels == digit][:26] for digit in range(10)])[:256]
    (notebook.parent / "data").mkdir()
    torch.save({"config": dict(img_channels=1, base_channels=32, time_emb_dim=128, num_classes=None, memory=256),
                "state_dict": {"conv.weight": torch.ones(1, 1, 1, 1), "conv.bias": torch.zeros(1), "memory": stored},
                "losses": []}, notebook.parent / "data" / "ddpm_mnist.pt")
    out = tmp_path / "result.json"
    subprocess.run(env=runner.command()[1], args=[*runner.command()[0], str(notebook), "--parts", "sample_quality",
                    "--out", str(out)], check=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["points"] == 0, [(c["test"], c["outcome"]) for c in result["checks"]]


STEALS_PROBES = """
import sys
_worker = sys.modules['__main__']
_seen = []
_run = _worker.Worker.run


def _keep(self, code, name, args, kwargs):
    _seen.append(repr(code))
    return _run(self, code, name, args, kwargs)


_worker.Worker.run = _keep


class Diffusion(Diffusion):
    def sample(self, *args, **kwargs):
        raise ValueError(' '.join(_seen)[-3000:])
"""
AMPLIFIES = """
import sys
_worker = sys.modules['__main__']
_big = bytes(20 * 2**20)
_encode = _worker.Worker.encode


def _amplified(self, v):
    if isinstance(v, torch.Tensor) and v.numel() == 6 * 784:
        return ("l", [("T", "uint8", (len(_big),), _big, "cpu")] * 100)   # 20 MB sent, 2 GB if decoded naively
    return _encode(self, v)


_worker.Worker.encode = _amplified
"""


def test_the_checks_code_never_reaches_feedback_as_source(tmp_path):
    """Probes and stand-ins reach the worker as compiled code without docstrings, never as their source text."""
    notebook = variant(tmp_path, "s", "reverse_process", append(STEALS_PROBES))
    failures = " ".join(failed_checks("reverse_process", str(notebook)))
    source = ROOT.joinpath("grader", "standins.py").read_text() + ROOT.joinpath("tests", "test_unet.py").read_text()
    lines = {line.strip() for line in source.splitlines() if len(line.strip()) > 25}
    assert not [line for line in lines if line in failures], "the checks' source reached a student's feedback"


def test_a_message_that_decodes_to_gigabytes_is_refused(tmp_path):
    """pickle sends a repeated value once; decoding copies each tensor: the checks refuse past a budget."""
    notebook = variant(tmp_path, "s", "forward_process", append(AMPLIFIES))
    before = _memory_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")   # the peak (VmHWM) restarts here: earlier tests' peaks don't count
    failures = failed_checks("forward_process", str(notebook))
    grown_mb = (_memory_kb("VmHWM") - before) / 1024
    assert any("forward_golden" in f or "mixed_t_golden" in f for f in failures), failures
    assert grown_mb < 1000, f"the checks' process grew by {grown_mb:.0f} MB decoding one message"


def _memory_kb(field):
    """This process's VmRSS (now) or VmHWM (peak) in kB."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1])


def test_filling_tmp_stops_at_its_cap_and_costs_its_own_part_only(tmp_path):
    """The sandbox's /tmp is a tmpfs (memory): it holds at most LIMITS['tmp_mb'], and the next worker starts with
    none of what an earlier one wrote there."""
    assert remote.sandbox(), "bubblewrap (bwrap) is needed to cap the workers' /tmp: make test installs it"
    cap = remote.LIMITS["tmp_mb"]

    def edit(cells, i):
        append(FILLS_TMP)(cells, i)
        [j] = [k for k, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade_id") == "two_point"]
        cells[j]["source"] = "".join(cells[j]["source"]) + "\n" + SEES_TMP
    notebook = str(variant(tmp_path, "s", "forward_process", edit))
    failures = failed_checks("forward_process", notebook)
    [written] = {int(f.split("wrote ")[1].split(" MB")[0]) for f in failures if "wrote " in f}
    assert cap - 64 < written <= cap, f"a worker wrote {written} MB into /tmp, capped at {cap} MB"
    assert all("unshare -1, hidden folders written 0" in f for f in failures if "wrote " in f), failures
    assert failed_checks("two_point", notebook) == []   # its worker sees none of the files, and /tmp is free again


SPINS = "import torch\nwhile True:\n    torch.randn(64, 64) @ torch.randn(64, 64)"


def _workers_cpu():
    """CPU seconds of the workers that have ended, as their parent (the zygote) counts them."""
    ns, _ = remote.spawn([])
    try:
        zygote = Path(f"/proc/{ns._connection.host_pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        fields = Path(f"/proc/{zygote}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    finally:
        ns.close()


def test_a_cell_that_ran_out_of_time_is_not_run_again(tmp_path, monkeypatch):
    """Neither the retry with the notebook's own earlier cells nor the sample-quality part (which rebuilds the
    U-Net with the notebook's cell) runs a cell again that has used up a CPU budget: the grading costs one budget."""
    import importlib
    from grader import cells
    budget = 5
    monkeypatch.setitem(remote.LIMITS, "cpu_per_check", budget)
    notebook = variant(tmp_path, "s", "unet", append(SPINS))
    (notebook.parent / "data").mkdir()
    shutil.copy(ROOT / MODEL, notebook.parent / "data" / "ddpm_mnist.pt")
    before = _workers_cpu()
    failures = failed_checks("unet", str(notebook))
    assert failures and all(remote.TIMED_OUT in f for f in failures), failures
    remote.check_started(budget)   # sample quality's check (its own budget is larger: spinning would cost that)
    try:
        with pytest.raises(cells.SubmissionError, match="earlier in the grading"):
            importlib.import_module("test_sample_quality").statistics(str(notebook), None, "cpu")
    finally:
        cells.close_workers()
    spent = _workers_cpu() - before
    assert budget <= spent < 1.5 * budget, f"the workers computed for {spent:.1f} s on a budget of {budget} s"


def test_without_a_model_sample_quality_says_the_model_is_missing(tmp_path):
    """Not the U-Net cell's error: there is no model to rebuild with it."""
    import importlib
    from grader import cells
    notebook = variant(tmp_path, "s", "unet", append("raise ValueError('oops')"))
    with pytest.raises(cells.SubmissionError, match="No trained model"):
        importlib.import_module("test_sample_quality").statistics(str(notebook), None, "cpu")
