"""A NeRF's training settings follow the device and the views' size, and a run keeps the ones it began with."""

import json

import pytest
import torch

from ins_core.data.demo_scene import write_demo_dataset
from ins_core.train.fit import FitRequest, start_fit
from ins_core.train.settings import default_settings

CPU = torch.device("cpu")


def _grid(settings: dict) -> tuple[int, int]:
    field = settings["model"]["field"]
    return field["n_levels"], field["log2_table_size"]


def test_a_cpu_nerf_on_small_views_takes_the_small_grid_and_larger_views_the_larger():
    assert _grid(default_settings("nerf", CPU, 128)) == (8, 15)
    assert _grid(default_settings("nerf", CPU, 256)) == (12, 17)
    assert _grid(default_settings("nerf", torch.device("cuda"), 128)) == (16, 19)  # the GPU's are unchanged
    small, gpu = default_settings("nerf", CPU, 100), default_settings("nerf", torch.device("cuda"), 100)
    assert (small["lr"], small["final_lr_fraction"]) == (3e-2, 0.3)
    assert (gpu["lr"], gpu["final_lr_fraction"]) == (1e-2, 0.1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("fit_settings") / "data", n_train=4, n_test=1, resolution=24)


def test_the_learning_rate_decays_to_the_runs_own_fraction_and_an_older_run_keeps_a_tenth(dataset, tmp_path):
    out = tmp_path / "run"
    session = start_fit(FitRequest(data=dataset, kind="nerf", out=out, device="cpu", steps=4))
    session.run_loop()
    trainer = session.trainer
    assert trainer.current_lr() == pytest.approx(3e-2 * 0.3)
    # A run written before the setting existed: its file has no fraction, and it trained with a tenth.
    config = json.loads((out / "run.json").read_text())
    del config["final_lr_fraction"]
    config.update(status="training", steps=8)
    (out / "run.json").write_text(json.dumps(config))
    resumed = start_fit(FitRequest(data=dataset, kind="nerf", out=out, device="cpu"))
    assert resumed.step == 4 and resumed.trainer.final_lr_fraction == 0.1
    resumed.run_loop()
    assert resumed.trainer.current_lr() == pytest.approx(3e-2 * 0.1)


def test_a_benchmark_may_replace_the_grid_and_the_optimiser_settings_and_nothing_else(dataset, tmp_path):
    session = start_fit(FitRequest(data=dataset, kind="nerf", out=tmp_path / "tuned", device="cpu", steps=1,
                                   tuning={"n_levels": 4, "log2_table_size": 12, "lr": 0.02, "final_lr_fraction": 1.0}))
    assert _grid(session.config) == (4, 12) and session.model.field.position_encoding.n_levels == 4
    assert session.trainer.base_lr == 0.02 and session.trainer.final_lr_fraction == 1.0
    with pytest.raises(ValueError, match="n_samples"):
        start_fit(FitRequest(data=dataset, kind="nerf", out=tmp_path / "bad", device="cpu", steps=1, tuning={"n_samples": 8}))
