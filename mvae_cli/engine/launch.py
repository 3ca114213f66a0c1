"""Launching ranks: a function run on N processes of this machine (gloo on CPU, NCCL on CUDA, one
GPU per rank), this process rank 0; and the engine's ``train`` launched that way."""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mvae_cli.data.format import read_dataset
from mvae_cli.engine.device import select_device
from mvae_cli.engine.distributed import init_from_env
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import build_model
from mvae_cli.engine.stack import stack_reason, train_stack
from mvae_cli.errors import UserError
from mvae_cli.model.stack import like_networks, stack_reason as model_stack_reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_threads(nproc: int) -> int:
    """Torch threads per rank on CPU: the cores shared out, so ranks do not oversubscribe them."""
    return max(1, len(os.sched_getaffinity(0)) // nproc)


def _rank_main(rank: int, size: int, port: int, device_type: str, fn: Callable, args: tuple) -> None:
    if device_type == "cpu":
        torch.set_num_threads(_cpu_threads(size))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    init_from_env(device_type)
    try:
        fn(*args)
        dist.barrier()  # every rank is done before any tears down (rank 0 hosts the store)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, args: tuple, nproc: int, device_type: str, main_args: tuple | None = None) -> Any:
    """Run ``fn`` on ``nproc`` ranks on this machine; this process is rank 0.

    Args:
        fn: a module-level function (it is pickled for the spawned ranks).
        args: its arguments on ranks 1…nproc−1.
        nproc: the number of ranks; on CUDA at most the number of visible GPUs.
        device_type: ``cpu`` (gloo) or ``cuda`` (NCCL, one GPU per rank).
        main_args: rank 0's arguments (default ``args``), e.g. with a progress callback.

    Returns:
        What ``fn`` returns on rank 0.

    Raises:
        UserError: ``nproc`` below 1, more ranks than GPUs, or a rank that failed.
    """
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    if device_type == "cuda" and nproc > torch.cuda.device_count():
        raise UserError(f"--nproc {nproc} needs {nproc} GPUs; {torch.cuda.device_count()} are visible")
    if nproc == 1:
        return fn(*(main_args or args))
    port = _free_port()
    context = mp.get_context("spawn")
    children = [context.Process(target=_rank_main, args=(rank, nproc, port, device_type, fn, args), daemon=True)
                for rank in range(1, nproc)]
    for child in children:
        child.start()
    saved = {key: os.environ.get(key) for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    threads = torch.get_num_threads()
    if device_type == "cpu":
        torch.set_num_threads(_cpu_threads(nproc))
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE=str(nproc),
                          LOCAL_RANK="0")
        init_from_env(device_type)
        try:
            result = fn(*(main_args or args))
            dist.barrier()
            for child in children:  # they leave while this rank's store still serves them
                child.join()
        finally:
            dist.destroy_process_group()
    finally:
        torch.set_num_threads(threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join()
    failed = [rank for rank, child in enumerate(children, 1) if child.exitcode != 0]
    if failed:
        raise UserError(f"rank(s) {', '.join(map(str, failed))} of {nproc} failed; see their messages above")
    return result


def trains_as_stack_of_one(recipe) -> bool:
    """Whether a run of ``recipe`` trains as a stack of one (:func:`~mvae_cli.engine.stack.train_stack`):
    where it stacks and its model has like networks to group (the categorical attributes' encoders
    and decoders, :func:`~mvae_cli.model.stack.like_networks`), whose grouped step is faster (the
    quick start's nets: 1.6×, ``benchmarks/grid_throughput.py``'s ``ones``); elsewhere (one label:
    nothing to group) the plain step is as fast or faster. The same files either way."""
    if stack_reason(recipe) is not None:
        return False
    try:
        with read_dataset(recipe.data.path) as dataset:
            specs = dataset.specs
        with torch.random.fork_rng(devices=[]):  # a look at the model's networks: the run seeds its own
            model = build_model(recipe, specs)
    except Exception:  # noqa: BLE001 -- the plain path opens the run and says what is wrong
        return False
    return model_stack_reason(model) is None and bool(like_networks(model))


def train_on_ranks(recipe, run_dir, progress=None, hooks=()):
    """The engine's ``train`` on ``recipe.nproc`` ranks of this machine (one process when 1; as a
    stack of one where that is faster, :func:`trains_as_stack_of_one`); ``progress`` is rank 0's, and
    so are the ``hooks`` (:mod:`~mvae_cli.engine.hooks`)."""
    if recipe.nproc <= 1 and trains_as_stack_of_one(recipe):
        result = train_stack([recipe], [run_dir], [progress], [hooks])[0]
        if isinstance(result, BaseException):
            raise result
        return result
    if recipe.nproc <= 1:
        return train(recipe, run_dir, progress, hooks)
    device = select_device(recipe.device)
    return launch(train, (recipe, run_dir), recipe.nproc, device.type, main_args=(recipe, run_dir, progress, hooks))
