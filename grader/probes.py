"""Checks shared by several parts that must look inside the worker (arguments reach it as copies, so what a function
does to its own inputs can only be seen there). Each probe is a self-contained function run by `ns.run`."""


def assert_keeps_its_arguments(ns, what, fn, **arguments):
    """Fail the check if `fn(*arguments.values())` changes any of its tensor arguments in place; the message names
    them. `what` is how the student knows the function, e.g. "forward(x0, t, noise)"."""
    changed = ns.run(changed_arguments, fn, list(arguments), list(arguments.values()))
    assert not changed, (f"{what} changed its argument{'s' if len(changed) > 1 else ''} {', '.join(changed)} in place: "
                         "the caller's tensors should stay as they were (write x = x * a, not x.mul_(a), x *= a or "
                         "x[...] = ...).")


def changed_arguments(fn, names, args):
    """The names of the tensor arguments that fn(*args) changed in place (values, shape or dtype). A probe (ns.run)."""
    import torch
    before = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
    fn(*args)
    return [name for name, a, b in zip(names, args, before)
            if b is not None and not (a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b))]
