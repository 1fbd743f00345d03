"""Tests of the torch-free, restricted reader of PyTorch checkpoints."""

import pickle

import numpy as np
import pytest

from deeplab_video.model import torch_checkpoint
from tests.model import torch_files


def _state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "backbone.stem.conv1.weight": rng.normal(size=(8, 3, 7, 7)).astype(np.float32),
        "backbone.stem.conv1.norm.running_var": rng.uniform(size=8).astype(np.float32),
        "backbone.stem.conv1.norm.num_batches_tracked": np.array(7, np.int64),
        "sem_seg_head.predictor._cluster_centers.weight": rng.normal(size=(4, 5)).astype(
            np.float64
        ),
    }


def test_reads_a_torch_save_archive_under_model(tmp_path):
    state = _state()
    path = tmp_path / "model_final.pth"
    torch_files.write_pth(path, {"model": torch_files.tensors_of(state), "iteration": 10})
    loaded = torch_checkpoint.read_state_dict(path)
    assert sorted(loaded) == sorted(state)
    for name, value in state.items():
        assert loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name], value)
    assert torch_checkpoint.is_torch_file(str(path))


def test_reads_views_that_share_a_storage(tmp_path):
    data = np.arange(24, dtype=np.float32)
    storage = torch_files.Storage("0", data)
    checkpoint = {
        "whole": torch_files.Tensor(storage, (4, 6)),
        # The transpose of rows 1..3 (a non-contiguous view with an offset).
        "view": torch_files.Tensor(storage, (6, 3), stride=(1, 6), offset=6),
    }
    path = tmp_path / "views.pth"
    torch_files.write_pth(path, checkpoint)
    loaded = torch_checkpoint.read_state_dict(path)
    np.testing.assert_array_equal(loaded["whole"], data.reshape(4, 6))
    np.testing.assert_array_equal(loaded["view"], data.reshape(4, 6)[1:].T)


def test_widens_bfloat16_storages(tmp_path):
    values = np.array([1.0, -2.5, 0.15625], np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    storage = torch_files.Storage("0", bits, storage_type="BFloat16Storage")
    path = tmp_path / "bf16.pth"
    torch_files.write_pth(path, {"model": {"w": torch_files.Tensor(storage, (3,))}})
    np.testing.assert_array_equal(torch_checkpoint.read_state_dict(path)["w"], values)


@pytest.mark.parametrize("under_model", [True, False])
def test_reads_detectron2_pkl(tmp_path, under_model):
    state = _state(1)
    path = tmp_path / "weights.pkl"
    torch_files.write_pkl(path, state, under_model=under_model)
    loaded = torch_checkpoint.read_state_dict(path)
    assert sorted(loaded) == sorted(state)
    np.testing.assert_array_equal(
        loaded["backbone.stem.conv1.weight"], state["backbone.stem.conv1.weight"]
    )
    assert torch_checkpoint.is_torch_file(str(path))


def test_refuses_a_pickle_that_would_run_a_command(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(
        pickle.dumps(
            {"model": {"w": np.zeros(2), "x": torch_files.RunsACommand(f"touch {marker}")}}
        )
    )
    with pytest.raises(torch_checkpoint.UnsafePickleError) as error:
        torch_checkpoint.read_state_dict(path)
    assert str(path) in str(error.value)
    assert "system" in str(error.value)
    assert not marker.exists()


def test_refuses_a_malicious_archive(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch_files.write_malicious_pth(path, f"touch {marker}")
    with pytest.raises(torch_checkpoint.UnsafePickleError, match="evil.pth"):
        torch_checkpoint.read_state_dict(path)
    assert not marker.exists()


def test_refuses_builtins_and_unknown_torch_names(tmp_path):
    for module, name in (("builtins", "eval"), ("torch", "load"), ("numpy", "load")):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(torch_files.dumps({"model": torch_files.Global(module, name)}))
        with pytest.raises(torch_checkpoint.UnsafePickleError, match=f"{module}.{name}"):
            torch_checkpoint.read_state_dict(path)


def test_rejects_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    assert not torch_checkpoint.is_torch_file(str(text))
    with pytest.raises(torch_checkpoint.TorchCheckpointError):
        torch_checkpoint.read_state_dict(text)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(pickle.dumps({"iteration": 3}))
    with pytest.raises(torch_checkpoint.TorchCheckpointError, match="no tensors"):
        torch_checkpoint.read_state_dict(empty)
    with pytest.raises(FileNotFoundError):
        torch_checkpoint.read_state_dict(tmp_path / "missing.pth")


def test_rejects_a_view_outside_its_storage(tmp_path):
    storage = torch_files.Storage("0", np.zeros(4, np.float32))
    path = tmp_path / "bad.pth"
    torch_files.write_pth(path, {"model": {"w": torch_files.Tensor(storage, (3, 3))}})
    with pytest.raises(torch_checkpoint.TorchCheckpointError, match="exceeds"):
        torch_checkpoint.read_state_dict(path)


def test_reads_only_the_state_dict_tensors(tmp_path):
    weights = torch_files.Storage("0", np.ones(3, np.float32))
    # A corrupt optimizer storage (shorter than declared) is never read.
    moments = torch_files.Storage("1", np.zeros(2, np.float32), numel=100)
    checkpoint = {
        "model": {"w": torch_files.Tensor(weights, (3,))},
        "optimizer": {"state": {0: {"exp_avg": torch_files.Tensor(moments, (100,))}}},
    }
    path = tmp_path / "model_final.pth"
    torch_files.write_pth(path, checkpoint)
    np.testing.assert_array_equal(torch_checkpoint.read_state_dict(path)["w"], np.ones(3))
    broken = tmp_path / "broken.pth"
    torch_files.write_pth(broken, {"model": checkpoint["optimizer"]["state"][0]})
    with pytest.raises(torch_checkpoint.TorchCheckpointError, match="holds 2 of 100"):
        torch_checkpoint.read_state_dict(broken)
