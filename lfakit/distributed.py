"""Several processes training one model: the process group that ``torchrun`` describes.

``torchrun --nproc-per-node N`` starts N copies of a program and tells each, in its
environment, who it is: ``RANK`` (0..N-1 over all machines), ``WORLD_SIZE`` (N times the
machines) and ``LOCAL_RANK`` (its GPU on this machine), with ``MASTER_ADDR`` / ``MASTER_PORT``
for the rendezvous. The engine (:func:`lfakit.engine.fit`) reads them through this module.

With ``WORLD_SIZE`` unset or 1 every function here is a no-op: nothing is initialised, no
collective runs, and a single process trains exactly as it always has. torch is imported inside
the functions, so the runner can ask :func:`world_size` and :func:`rank` without starting torch.

:func:`init` starts the process group once per process (``nccl`` when training on CUDA, ``gloo``
on the CPU) and destroys it at exit. The helpers (:func:`all_reduce_sum`,
:func:`broadcast_object`, :func:`barrier`) are collectives: every rank must call them in the same
order, which the engine's control flow guarantees by deciding everything that branches (resume,
NaN stop, early stopping) from values that are the same on all ranks.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any, Sequence


def _group():
    """torch.distributed when a process group is running in this process, else None. Looks in
    ``sys.modules`` only: a process that never imported torch.distributed has no group."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        from lfakit.errors import ParameterError

        raise ParameterError(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None


def world_size() -> int:
    """Processes training together: the running group's size, else ``$WORLD_SIZE`` (1 if unset)."""
    dist = _group()
    return dist.get_world_size() if dist is not None else max(_env_int("WORLD_SIZE", 1), 1)


def rank() -> int:
    """This process's rank, 0..world_size-1 (0 when not distributed)."""
    if world_size() <= 1:
        return 0
    dist = _group()
    return dist.get_rank() if dist is not None else _env_int("RANK", 0)


def local_rank() -> int:
    """This process's index on its machine (``$LOCAL_RANK``): the CUDA device it trains on."""
    return _env_int("LOCAL_RANK", 0) if world_size() > 1 else 0


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """Rank 0, the one process that writes checkpoints, records and progress (always True alone)."""
    return rank() == 0


def init(device: Any = None) -> bool:
    """Start the process group from torchrun's environment (once; later calls return at once).

    ``device`` is the training device: on CUDA the backend is ``nccl`` and this process's CUDA
    device becomes ``cuda:$LOCAL_RANK``; otherwise ``gloo``. Returns whether training is
    distributed; with ``WORLD_SIZE`` unset or 1 it does nothing and returns False. Each process
    starts a group of its own on torchrun's store, so notebook kernels started one after another
    under the same torchrun (``run-all``) each get a fresh one."""
    if world_size() <= 1:
        return False
    if _group() is not None:
        return True
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        from lfakit.errors import ParameterError

        raise ParameterError(f"WORLD_SIZE={world_size()} asks for distributed training, but this torch build has no "
                             "torch.distributed")
    dev_type = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    # torchrun's store outlives this process: each notebook kernel of a `run-all` starts a new
    # group on it, and a second group under the same keys would read the first one's stale
    # addresses. Every rank counts its groups in the store and keys the k-th under its own prefix.
    store, me, size = next(dist.rendezvous("env://"))
    generation = store.add(f"lfakit/groups/rank{me}", 1)
    store = dist.PrefixStore(f"lfakit/group{generation}", store)
    if dev_type == "cuda":
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", store=store, rank=me, world_size=size,
                                device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group("gloo", store=store, rank=me, world_size=size)
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    """Destroy the process group, if one is running (registered at exit by :func:`init`)."""
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()


def _comm_device():
    """Where collective tensors live: the current CUDA device for nccl, else the CPU."""
    import torch

    dist = _group()
    if dist is not None and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank arrives here (no-op alone)."""
    dist = _group()
    if dist is not None:
        if dist.get_backend() == "nccl":
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks, in float64 (``values`` itself alone)."""
    dist = _group()
    if dist is None:
        return [float(v) for v in values]
    import torch

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable value) on every rank; ``obj`` itself alone. Tensors in
    it should be on the CPU, so that they unpickle on the CPU of every rank."""
    dist = _group()
    if dist is None:
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]
