"""PyTorch archives read as data (hcm.core.torch_archive): tensors from checked storages, and
every hostile archive refused by the checkpoint and weight loaders without running anything."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_pickles import gadgets, tricks

from hcm.core.pickledata import PickleDataError
from hcm.core.torch_archive import mapped_record, read_archive, script_tensors
from hcm.pipeline.encoders.checkpoints import CheckpointError, read_state_dict
from hcm.training.checkpoints import CheckpointReadError, load_checkpoint


def _replace_pickle(source: Path, target: Path, data: bytes) -> Path:
    """``source`` (a torch.save zip) with its data.pkl replaced by ``data``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            out.writestr(info, data if info.filename.endswith("/data.pkl") else src.read(info))
    return target


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 1}, path)
    return path


def test_tensors_views_and_dtypes_read_back(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    value = {"t": base, "view": base[1:, ::2], "half": torch.ones(3, dtype=torch.float16),
             "long": torch.tensor([2**40, -1]), "bool": torch.tensor([True, False]),
             "bf": torch.zeros(2, dtype=torch.bfloat16),
             "empty": torch.zeros(0, 4), "scalar": torch.tensor(3.5), "param": torch.nn.Parameter(torch.ones(2)),
             "nested": [1, (2.5, "x"), {"k": None}]}
    path = tmp_path / "a.pt"
    torch.save(value, path)
    out = read_archive(path)
    assert set(out) == set(value) and out["nested"] == value["nested"]
    for key in value:
        if isinstance(value[key], torch.Tensor):
            assert out[key].dtype == value[key].dtype and torch.equal(out[key], value[key].detach()), key
    assert out["view"].shape == (3, 3)
    assert out["view"].untyped_storage().data_ptr() == out["t"].untyped_storage().data_ptr()  # one storage, read once


def test_a_checkpoint_of_an_earlier_version_keeps_its_numpy_values(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"model": {}, "epoch": 2, "rng": np.random.get_state(), "metric": np.float64(0.5)}, path,
               pickle_protocol=2)
    state = load_checkpoint(path)
    assert state["metric"] == 0.5 and state["rng"][0] == "MT19937" and state["rng"][1].shape == (624,)


def test_a_scripted_setstate_is_not_run(tmp_path: Path) -> None:
    """torch.jit.load runs the archive's code (here a __setstate__ that raises); hcm reads its tensors."""

    class Guarded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.arange(4.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, bool]:
            return (self.weight, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
            raise RuntimeError("the archive's code ran")

    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(Guarded()), str(path))
    with pytest.raises(Exception, match="the archive's code ran"):
        torch.jit.load(str(path))
    with pytest.raises(CheckpointError, match="state is a tuple.*nothing in the file was run"):
        read_state_dict(path)  # the object's state is not a dict of attributes: refused, not run


def test_a_traced_module_reads_like_its_state_dict(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    path = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(module.eval(), torch.zeros(2, 2)), str(path))
    tensors = script_tensors(read_archive(path, script=True))
    expected = torch.jit.load(str(path)).state_dict()
    assert list(tensors) == list(expected)
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    assert read_state_dict(path).keys() == expected.keys()


@pytest.mark.parametrize("case", sorted(gadgets(Path("/x"), in_file=False)))
def test_every_gadget_is_refused_by_both_loaders(tmp_path: Path, good: Path, case: str) -> None:
    marker = tmp_path / "ran"
    path = _replace_pickle(good, tmp_path / "evil.pt", gadgets(marker, in_file=False)[case])
    name = case.split()[0].replace("__builtin__", "builtins").replace("numpy.core.", "numpy._core.")
    with pytest.raises(CheckpointReadError, match=rf"evil\.pt was refused: the pickle asks for "
                                                  rf"{name.replace('.', '[.]')}.*Nothing in the file was run"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=rf"refused.*asks for {name.replace('.', '[.]')}"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("case", sorted(tricks(Path("/x"))))
def test_protocol_tricks_end_in_a_clear_refusal(tmp_path: Path, good: Path, case: str) -> None:
    marker = tmp_path / "ran"
    path = _replace_pickle(good, tmp_path / "evil.pt", tricks(marker)[case])
    with pytest.raises(CheckpointReadError, match=r"evil\.pt (was refused|cannot be read|is not an hcm)"):
        load_checkpoint(path)
    assert not marker.exists()


def _archive_with(good: Path, target: Path, edit) -> Path:
    with zipfile.ZipFile(good) as src:
        records = {info.filename: src.read(info) for info in src.infolist()}
    edit(records)
    with zipfile.ZipFile(target, "w") as out:
        for name, data in records.items():
            out.writestr(name, data)
    return target


def _storage_key(records: dict) -> str:
    return next(n for n in records if "/data/" in n and not n.endswith("serialization_id"))


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.__setitem__(_storage_key(r), r[_storage_key(r)][:-4]), "holds 20 bytes, not the 24"),
    (lambda r: r.pop(_storage_key(r)), "lacks the record .*data/"),
    (lambda r: r.__setitem__(next(n for n in r if n.endswith("byteorder")), b"big"), "byte order"),
    (lambda r: r.pop(next(n for n in r if n.endswith("data.pkl"))), "data.pkl"),
])
def test_damaged_archives_are_refused(tmp_path: Path, good: Path, edit, message: str) -> None:
    path = _archive_with(good, tmp_path / "bad.pt", edit)
    with pytest.raises(PickleDataError, match=message):
        read_archive(path)
    with pytest.raises(CheckpointReadError, match=r"bad\.pt (was refused|cannot be read)"):
        load_checkpoint(path)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path, good: Path) -> None:
    with zipfile.ZipFile(good) as src:
        data = src.read(next(n for n in src.namelist() if n.endswith("data.pkl")))
    assert b"K\x02K\x03\x86" in data  # the size (2, 3)
    path = _replace_pickle(good, tmp_path / "far.pt", data.replace(b"K\x02K\x03\x86", b"K\x09K\x03\x86", 1))
    with pytest.raises(CheckpointReadError, match="reaches past its storage"):
        load_checkpoint(path)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    path.write_bytes(io.BytesIO(b"not a zip").getvalue())
    with pytest.raises(CheckpointReadError, match="plain.pt cannot be read"):
        load_checkpoint(path)


class _Typed(torch.nn.Module):
    """A scripted module with TorchScript's typed list and dict attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.ints: list[int] = [1, 2]
        self.table: dict[str, torch.Tensor] = {"a": torch.ones(2)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.ints[0] + self.table["a"]


def test_a_scripted_module_with_typed_attributes_reads_like_its_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "typed.pt"
    torch.jit.save(torch.jit.script(_Typed()), str(path))
    state = read_archive(path, script=True)
    assert state["ints"] == [1, 2] and set(state["table"]) == {"a"}
    expected = torch.jit.load(str(path)).state_dict()
    tensors = script_tensors(state)
    assert list(tensors) == list(expected) and all(torch.equal(tensors[k], expected[k]) for k in expected)


def test_a_compression_bomb_is_refused_before_it_expands(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data += b"\x00" * (200 << 20)  # after STOP: ignored by a reader, 200 MB once inflated
                out.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
            else:
                out.writestr(info, data)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointReadError, match="compression bomb"):
        load_checkpoint(path)


def test_mapped_storages_read_the_same_tensors_and_never_write_the_file(tmp_path: Path) -> None:
    value = {"w": torch.arange(12.0).reshape(3, 4), "h": torch.ones(5, dtype=torch.float16),
             "view": torch.arange(10)[2:7], "empty": torch.zeros(0)}
    path = tmp_path / "a.pt"
    torch.save(value, path)
    before = path.read_bytes()
    mapped = read_archive(path, mapped=True)
    for key, tensor in value.items():
        assert mapped[key].dtype == tensor.dtype and torch.equal(mapped[key], tensor), key
    with zipfile.ZipFile(path) as archive:  # torch writes storages uncompressed and aligned: mapped, not read
        records = [info for info in archive.infolist() if "/data/" in info.filename and info.file_size]
        assert all(mapped_record(archive, info.filename, info.file_size, 8) is not None for info in records)
    mapped["w"].add_(1)  # copy-on-write: this process's copy only
    assert path.read_bytes() == before and torch.equal(read_archive(path, mapped=True)["w"], value["w"])


def test_compressed_records_are_read_not_mapped(tmp_path: Path, good: Path) -> None:
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info))
    assert torch.equal(read_archive(path, mapped=True)["model"]["w"], torch.arange(6.0).reshape(2, 3))
