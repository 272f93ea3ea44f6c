"""Fuzz worker: runs hcm's untrusted-file loaders over many inputs in one process.

``python fuzz_loaders.py OUT SEED COUNT HYPOTHESIS_EXAMPLES`` mutates a valid MMSA-style pickle
and a valid checkpoint (byte flips, truncations, spliced opcodes, inserted gadget calls),
feeds each to the MMSA reader and (inside a checkpoint zip) to the checkpoint loader, then
feeds hypothesis-generated opcode streams to the pickle reader. Every input must end in a
value or hcm's own error; anything else is written to ``OUT/unexpected-*.bin`` with its
traceback. Every gadget writes ``OUT/ran`` if it runs. Prints a JSON summary line.
"""

from __future__ import annotations

import json
import pickle
import random
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np
import torch

from hcm.pipeline.importers.mmsa_file import MmsaFileError, load_pickle
from hcm.training.checkpoints import CheckpointReadError, load_checkpoint


def valid_pickles(protocol: int) -> bytes:
    split = {"id": np.array(["a$_$1", "b$_$2"], dtype=object), "raw_text": ["x", "y"],
             "audio": np.zeros((2, 3, 4), np.float32), "vision": np.ones((2, 3, 5)),
             "regression_labels": np.array([0.5, -1.0], np.float32), "audio_lengths": np.array([3, 2])}
    return pickle.dumps({"train": split, "valid": split, "test": dict(split)}, protocol=protocol)


def chunks(marker: Path) -> list[bytes]:
    """Opcode fragments to splice in: structure, memo, numpy names, calls, gadgets."""
    shell = f"touch '{marker}'".encode()
    code = f"open({str(marker)!r}, 'w')".encode()
    return [b"(", b"]", b"}", b")", b"a", b"e", b"s", b"u", b"t", b"l", b"d", b"R", b"b", b"\x81", b"\x93",
            b"h\x00", b"h\x01", b"q\x00", b"q\x01", b"\x94", b"K\x01", b"K\x00", b"J\xff\xff\xff\xff", b"N",
            b"\x88", b"\x89", b"\x85", b"\x86", b"\x87", b"0", b"1", b"2", b"Q", b".",
            b"cnumpy\ndtype\n", b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n",
            b"cnumpy.core.multiarray\nscalar\n", b"c_codecs\nencode\n", b"ccollections\nOrderedDict\n",
            b"X\x02\x00\x00\x00f8", b"X\x02\x00\x00\x00O8", b"X\x01\x00\x00\x00<", b"C\x08" + b"\x00" * 8,
            b"cos\nsystem\n(X" + len(shell).to_bytes(4, "little") + shell + b"tR",
            b"cbuiltins\nexec\n(X" + len(code).to_bytes(4, "little") + code + b"tR"]


def mutate(data: bytes, rng: random.Random, pieces: list[bytes]) -> bytes:
    kind = rng.randrange(4)
    data = bytearray(data)
    if kind == 0:  # byte flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
    elif kind == 1:  # truncation
        data = data[: rng.randrange(len(data))]
    elif kind == 2:  # spliced opcodes
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i:i] = rng.choice(pieces)
    else:  # a stretch copied elsewhere (memo indices and marks out of place)
        i, j = sorted(rng.sample(range(len(data)), 2))
        k = rng.randrange(len(data))
        data[k:k] = data[i:j][:64]
    return bytes(data)


def checkpoint_with(template: dict[str, bytes], data_pkl: bytes, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        for name, record in template.items():
            out.writestr(name, data_pkl if name.endswith("/data.pkl") else record)
    return path


def main() -> None:
    out, seed, count, examples = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    marker = out / "ran"
    rng = random.Random(seed)
    pieces = chunks(marker)
    torch.set_num_threads(1)
    base_ckpt = out / "base.pt"
    torch.save({"model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.int64)}, "epoch": 1,
                "rng": {"numpy": np.arange(4, dtype=np.uint32)}}, base_ckpt)
    with zipfile.ZipFile(base_ckpt) as archive:
        template = {n: archive.read(n) for n in archive.namelist()}
    ckpt_pickle = next(v for n, v in template.items() if n.endswith("/data.pkl"))
    seeds = [valid_pickles(p) for p in (2, 4, 5)]
    counts = {"inputs": 0, "values": 0, "refused": 0, "unexpected": 0}

    def run(label: str, data: bytes, load) -> None:
        counts["inputs"] += 1
        try:
            load()
            counts["values"] += 1
        except (MmsaFileError, CheckpointReadError):
            counts["refused"] += 1
        except Exception:  # noqa: BLE001  anything else is a finding
            counts["unexpected"] += 1
            stem = out / f"unexpected-{label}-{counts['inputs']}"
            stem.with_suffix(".bin").write_bytes(data)
            stem.with_suffix(".txt").write_text(traceback.format_exc())

    sample = out / "input.pkl"
    for i in range(count):
        data = mutate(rng.choice(seeds), rng, pieces)
        sample.write_bytes(data)
        run("mmsa", data, lambda: load_pickle(sample))
        if i % 3 == 0:
            data = mutate(ckpt_pickle, rng, pieces)
            path = checkpoint_with(template, data, out / "input.pt")
            run("checkpoint", data, lambda path=path: load_checkpoint(path))
    if examples:
        generated(out, pieces, examples, run)
    print(json.dumps({**counts, "marker": marker.exists()}))


def generated(out: Path, pieces: list[bytes], examples: int, run) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sample = out / "generated.pkl"
    stream = st.lists(st.one_of(st.sampled_from(pieces), st.binary(max_size=6)), max_size=40)

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(stream, st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]))
    def one(parts: list[bytes], head: bytes) -> None:
        data = head + b"".join(parts) + b"."
        sample.write_bytes(data)
        run("generated", data, lambda: load_pickle(sample))

    one()


if __name__ == "__main__":
    main()
