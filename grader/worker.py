"""The submitted code's side of the grader: a process that runs a notebook's cells and answers the checks' requests
about the objects they define. grader/remote.py is the checks' side; the two talk over a socket.

Only data crosses: numbers, strings, tensors, generators' states and containers of them, decoded by an unpickler that
can build no object of any class (`decode`), and references to objects that stay on the other side. Whatever the
submitted code does in its process, it can only change the answers it gives: never a check, a score or a file of the
grader, and the checks' process never runs a line of it.

`python worker.py --zygote FD` imports torch once and then forks a fresh worker for each namespace the checks ask
for (FD: its socket to the checks). It runs no submitted code itself.
"""
import builtins
import io
import marshal
import operator
import os
import pickle
import shutil
import signal
import socket
import struct
import sys
import tempfile

import torch

MAX_MESSAGE = 128 * 2**20       # bytes in one message
MAX_ERROR = 300                 # characters of an error message from the other side
MAX_ITEMS = 4 * 2**20           # values decoded from one message, each 64 bytes of tensor data counting as one


class Broken(Exception):
    """The other side sent something that is not a message, or went away."""


class _DataOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("only plain data may be sent")


def send(sock, message):
    data = pickle.dumps(message, protocol=5)
    if len(data) > MAX_MESSAGE:
        raise Broken("a message larger than the grader accepts")
    sock.sendall(struct.pack("!Q", len(data)) + data)


def _read(sock, n):
    chunks = []
    while n:
        try:
            chunk = sock.recv(min(n, 2**20))
        except OSError:
            raise Broken("the other side stopped in the middle of a message") from None
        if not chunk:
            raise Broken("the other side closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(sock):
    (n,) = struct.unpack("!Q", _read(sock, 8))
    if n > MAX_MESSAGE:
        raise Broken("a message larger than the grader accepts")
    try:
        return _DataOnly(io.BytesIO(_read(sock, n))).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, RecursionError, MemoryError) as err:
        raise Broken(f"a message that is not plain data ({type(err).__name__})") from None


class Proxy:
    """An object that lives on the other side. Attribute access, calls, indexing and iteration are requests."""

    __slots__ = ("_peer", "_id", "_type")

    def __init__(self, peer, id_, type_name):
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_id", id_)
        object.__setattr__(self, "_type", type_name)

    def __getattr__(self, name):
        return self._peer.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._peer.request("setattr", self, name, value)

    def __call__(self, *args, **kwargs):
        return self._peer.request("call", self, args, kwargs)

    def __getitem__(self, key):
        return self._peer.request("getitem", self, key)

    def __setitem__(self, key, value):
        self._peer.request("setitem", self, key, value)

    def __iter__(self):
        return self._peer.request("iter", self)

    def __next__(self):
        return self._peer.request("next", self)

    def __len__(self):
        return self._peer.request("len", self)

    def __bool__(self):
        return True

    def __repr__(self):
        return f"<{self._type} of the submission>"


OPS = {"getattr": getattr, "setattr": setattr, "getitem": operator.getitem, "setitem": operator.setitem,
       "iter": iter, "next": next, "len": len, "call": lambda f, args, kwargs: f(*args, **kwargs)}


class Peer:
    """One end of a connection: encodes values, keeps the objects it lent by reference, serves the other side's
    requests while it waits for its own answer (so either side may call back into the other)."""

    def __init__(self, sock):
        self.sock = sock
        self.lent = {}          # id -> object lent to the other side
        self._decoded = 0       # values (and 64-byte blocks of tensor data) decoded from the current message

    # -- values -------------------------------------------------------------------------------------------------
    def encode(self, v):
        if v is None or type(v) in (bool, int, float, str, bytes):
            return v
        if isinstance(v, torch.Tensor):
            t = v.detach()
            device = str(t.device)
            t = t.cpu().contiguous()
            data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return ("T", str(t.dtype).removeprefix("torch."), tuple(t.shape), data, device)
        if isinstance(v, torch.Size):
            return ("S", tuple(int(n) for n in v))
        for base in (int, float, str, bytes):               # subclasses: numpy's float64, enums, ...
            if isinstance(v, base):
                return base(v)
        if isinstance(v, Proxy) and v._peer is self:
            return ("B", v._id)
        if isinstance(v, (list, tuple, set)):
            return ("t" if isinstance(v, tuple) else "e" if isinstance(v, set) else "l", [self.encode(x) for x in v])
        if type(v) is dict or type(v).__name__ == "OrderedDict":
            return ("d", [(self.encode(k), self.encode(x)) for k, x in v.items()])
        if isinstance(v, torch.dtype):
            return ("D", str(v).removeprefix("torch."))
        if isinstance(v, torch.device):
            return ("V", str(v))
        if isinstance(v, torch.Generator):
            return ("G", v.get_state().numpy().tobytes(), str(v.device))
        if isinstance(v, slice):
            return ("sl", self.encode(v.start), self.encode(v.stop), self.encode(v.step))
        if v is Ellipsis:
            return ("E",)
        if type(v).__module__ == "numpy":
            if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
                return self.encode(v.item())
            return ("N", self.encode(torch.from_numpy(v.copy())))
        self.lent[id(v)] = v
        return ("R", id(v), type(v).__name__[:60])

    def decode(self, w):
        self._decoded += 1
        if self._decoded > MAX_ITEMS:
            raise Broken("a message with more values than the grader accepts")
        if not isinstance(w, tuple):
            if w is None or type(w) in (bool, int, float, str, bytes):
                return w
            raise Broken("an unexpected value")
        tag = w[0]
        if tag == "T":
            _, name, shape, data, device = w
            dtype = getattr(torch, str(name), None)
            if not isinstance(dtype, torch.dtype):
                raise Broken("an unknown dtype")
            shape = tuple(int(n) for n in shape)
            self._decoded += len(data) // 64     # tensor bytes count too: a repeated one is copied each time
            if self._decoded > MAX_ITEMS:
                raise Broken("a message with more data than the grader accepts")
            if any(n < 0 for n in shape) or (not data and 0 not in shape):
                raise Broken("a tensor whose data does not fit its shape")
            if data:
                t = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
            else:
                t = torch.empty(shape, dtype=dtype)
            if dtype == torch.bool:
                t = t.view(torch.uint8) != 0          # any byte but 0 or 1 would be an invalid bool
            if str(device).startswith("cuda") and torch.cuda.is_available():
                t = t.to(device)
            return t
        if tag == "S":
            return torch.Size(int(n) for n in w[1])
        if tag in ("l", "t", "e"):
            items = [self.decode(x) for x in w[1]]
            return {"l": list, "t": tuple, "e": set}[tag](items)
        if tag == "d":
            return {self.decode(k): self.decode(x) for k, x in w[1]}
        if tag == "D":
            dtype = getattr(torch, str(w[1]), None)
            if not isinstance(dtype, torch.dtype):
                raise Broken("an unknown dtype")
            return dtype
        if tag == "V":
            return torch.device(str(w[1]))
        if tag == "G":
            g = torch.Generator()
            g.set_state(torch.frombuffer(bytearray(w[1]), dtype=torch.uint8).clone())
            return g
        if tag == "sl":
            return slice(*(self.decode(x) for x in w[1:]))
        if tag == "E":
            return Ellipsis
        if tag == "N":
            return self.decode(w[1]).numpy()
        if tag == "R":
            return Proxy(self, w[1], str(w[2]))
        if tag == "B":
            try:
                return self.lent[w[1]]
            except (KeyError, TypeError):
                raise Broken("a reference to nothing") from None
        raise Broken("an unknown value")

    # -- requests -----------------------------------------------------------------------------------------------
    def state(self):
        """What the two sides share while one calls the other: the global random state (one logical stream)."""
        return torch.get_rng_state().numpy().tobytes()

    def adopt(self, rng):
        try:
            torch.set_rng_state(torch.frombuffer(bytearray(rng), dtype=torch.uint8).clone())
        except (RuntimeError, TypeError, ValueError):
            raise Broken("a random state that is not one") from None

    def request(self, op, target, *args):
        send(self.sock, ("req", op, self.encode(target), [self.encode(a) for a in args], self.state(), self.context()))
        return self.wait()

    def context(self):
        return None

    def wait(self):
        """Serve the other side's requests until the answer to ours comes."""
        while True:
            message = self.begin(self.receive())
            if not isinstance(message, tuple) or not message:
                raise Broken("a message of the wrong form")
            if message[0] == "req":
                self.serve(message)
                continue
            if message[0] == "ok" and len(message) == 3:
                self.adopt(message[2])
                return self.decode(message[1])
            if message[0] == "err" and len(message) == 4:
                self.adopt(message[3])
                raise self.error(str(message[1]), str(message[2])[:MAX_ERROR])
            raise Broken("a message of the wrong form")

    def receive(self):
        return recv(self.sock)

    def begin(self, message):
        """A new message: its decoding starts a fresh budget (pickle may repeat one value any number of times)."""
        self._decoded = 0
        return message

    def error(self, name, message):
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, Exception) and kind is not Broken:
            try:
                return kind(message)
            except Exception:
                pass
        return RuntimeError(f"{name}: {message}")

    def allowed(self, op, target, args):
        return True

    def serve(self, message):
        try:
            _, op, target, args, rng, context = message
            self.adopt(rng)
            target, args = self.decode(target), [self.decode(a) for a in args]
            if op not in OPS or not self.allowed(op, target, args):
                raise PermissionError(f"the grader does not allow '{op}' here")
            reply = ("ok", self.encode(self.perform(op, target, args, context)), self.state())
        except Broken:
            raise
        except BaseException as err:  # noqa: B036  (the submitted code's SystemExit and KeyboardInterrupt included)
            if isinstance(err, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                name, text = "AssertionError", f"your code raised {type(err).__name__} while it was checked."
            else:
                name, text = type(err).__name__, _text(err)
            reply = ("err", name, text[:MAX_ERROR], self.state())
        send(self.sock, reply)

    def perform(self, op, target, args, context):
        return OPS[op](target, *args)


def _text(err):
    try:
        return str(err)
    except Exception:
        return "(an error whose message cannot be shown)"


# ------------------------------------------------------------------------------------------------------------------
# The submitted code's side


class Worker(Peer):
    """Serves the checks: runs cells into a namespace, and performs requests on the objects there."""

    def __init__(self, sock):
        super().__init__(sock)
        self.namespace = {"__name__": "submission"}
        self.lent[0] = self.namespace

    def encode(self, v):
        if v is self.namespace:
            return ("R", 0, "namespace")
        return super().encode(v)

    def perform(self, op, target, args, context):
        """Arguments arrive as copies: what the submitted code does to them in place never reaches the checks."""
        if op == "call" and target is _LOAD:
            return self.load(*args[0])
        grad, autocasts = context                # the checks' grad mode and autocast hold here too
        torch.set_grad_enabled(bool(grad))
        contexts = [torch.autocast(device, dtype=getattr(torch, dtype), enabled=bool(on))
                    for device, on, dtype in autocasts if device == "cpu" or torch.cuda.is_available()]
        for ctx in contexts:
            ctx.__enter__()
        try:
            return self.run(*args[0]) if op == "call" and target is _RUN else OPS[op](target, *args)
        finally:
            for ctx in reversed(contexts):
                ctx.__exit__(None, None, None)

    def load(self, cells):
        """Run cells (name, compiled code) in order into the namespace. None, or (name, error kind, message)."""
        for name, code in cells:
            try:
                exec(marshal.loads(code), self.namespace)
            except (SystemExit, KeyboardInterrupt) as err:
                return (name, "stop", type(err).__name__)
            except BaseException as err:  # noqa: B036
                return (name, "error", f"{type(err).__name__}: {_text(err)}"[:MAX_ERROR])
        return None

    def run(self, code, name, args, kwargs):
        """A probe of the checks: a function sent as compiled code (never its source), run here on the submitted
        objects, returning data."""
        scope = {"__name__": "probe"}
        exec(marshal.loads(code), scope)
        return scope[name](*args, **kwargs)


class _Marker:
    pass


_LOAD, _RUN = _Marker(), _Marker()


def serve_worker(sock):
    worker = Worker(sock)
    worker.lent[1], worker.lent[2] = _LOAD, _RUN
    while True:
        try:
            message = worker.begin(worker.receive())
        except Broken:
            os._exit(0)
        if isinstance(message, tuple) and message and message[0] == "req":
            worker.serve(message)
        else:
            os._exit(0)


# ------------------------------------------------------------------------------------------------------------------
# The zygote: forks workers with torch already imported


def _deny(root):
    """Where no sandbox hides the grader's files, an audit hook keeps the submitted code from opening them."""
    private = [os.path.join(root, "tests") + os.sep, os.path.join(root, "solution.ipynb"), os.path.join(root, "tools"),
               os.path.join(root, ".git") + os.sep]

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if any(path.startswith(p) for p in private):
                raise PermissionError("submitted code may not read the grader's files")
    sys.addaudithook(hook)


def _prctl(option, value):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def no_dump():
    """PR_SET_DUMPABLE 0: no other process of this user can ptrace this one or open its /proc files."""
    _prctl(4, 0)


def die_with_parent():
    """PR_SET_PDEATHSIG SIGKILL: this process ends when the one that started it does."""
    _prctl(1, signal.SIGKILL)


def _remove(path):
    """Remove a file or folder, even one a worker made unreadable (the same user may chmod it back)."""
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    folders = [path]
    while folders:                        # each folder opened up before it is entered
        folder = folders.pop()
        try:
            os.chmod(folder, 0o700)
            folders += [e.path for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def zygote(fd, root, sandboxed, scratch):
    """scratch: the workers' temporary folder (the sandbox's /tmp, a size-capped tmpfs; without one, a folder of the
    checks' process). Each worker has a folder of its own in it (its working directory and TMPDIR), removed when it
    ends; what they left elsewhere in it goes when none is left."""
    control = socket.socket(fileno=fd)
    no_dump()
    die_with_parent()                     # with the checks' process
    torch.set_num_threads(1)
    for module in ("numpy", "torch.nn", "torch.nn.functional", "torchvision", "matplotlib.pyplot", "tqdm.auto"):
        try:
            __import__(module)
        except ImportError:
            pass
    if not sandboxed:
        _deny(root)
    children = {}                       # pid -> its folder
    while True:
        try:
            message = recv(control)
        except Broken:
            break
        if message == ("fork",):
            mine, theirs = socket.socketpair()
            folder = tempfile.mkdtemp(prefix="work-", dir=scratch)
            pid = os.fork()
            if pid == 0:
                control.close()
                theirs.close()
                os.setsid()
                die_with_parent()         # with the zygote
                os.chdir(folder)
                os.environ["TMPDIR"] = tempfile.tempdir = folder
                serve_worker(mine)
                os._exit(0)
            mine.close()
            children[pid] = folder
            socket.send_fds(control, [pickle.dumps(("forked", pid))], [theirs.fileno()])
            theirs.close()
        elif isinstance(message, tuple) and len(message) == 2 and message[0] == "end":
            pid = message[1]
            if pid not in children:
                send(control, ("ended", None))
                continue
            for target in (-pid, pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            _remove(children.pop(pid))
            if not children:
                if sandboxed:   # alone in its process namespace: end what the workers left running
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except OSError:
                        pass
                for name in os.listdir(scratch):   # the next worker finds none of their files
                    _remove(os.path.join(scratch, name))
            send(control, ("ended", status))
        else:
            break
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--zygote":
        zygote(int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5])
