"""Data-parallel training: two CPU processes with the gloo backend take a step and end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from fixtures.training_catalog import write_training_catalog

from pipelines.training.loop import TrainConfig, train

TINY = {"architecture": "panelnet", "model_kwargs": {"encoder": "res2net_tiny", "decoder_channels": 16},
        "tile_size": 32, "gsd_m": 0.5, "batch_size": 2, "epochs": 1, "steps_per_epoch": 1, "device": "cpu",
        "precision": "fp32"}


def _worker(rank: int, world_size: int, port: int, config: TrainConfig) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(config, progress=False)
    parameters = {k: v.detach() for k, v in result.model.named_parameters()}
    torch.save({"state": result.state, "parameters": parameters}, Path(config.out).parent / f"rank{rank}.pt")


def test_two_process_gloo_step_keeps_ranks_identical(tmp_path):
    catalog = write_training_catalog(tmp_path / "chips")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = TrainConfig.from_dict({**TINY, "catalog": catalog.directory, "out": tmp_path / "run"})
    mp.spawn(_worker, args=(2, port, config), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["state"]["step"] for r in ranks] == [1, 1]
    for name, value in ranks[0]["parameters"].items():
        torch.testing.assert_close(value, ranks[1]["parameters"][name], msg=name)
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"best.safetensors", "last.pt", "metrics.csv", "curves.png"} <= written
    assert not any(name.startswith("rank") for name in written)
