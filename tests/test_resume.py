"""Resuming mid-epoch and sharding within a rank: a loader killed mid-epoch and restored in a
fresh process yields exactly the batches it had not handed over yet, in the same order, for
any worker count and for a rank's share; every loader worker reads a disjoint share of the
rank's windows; states that do not fit the loader are refused with the kit's error."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from iokit.errors import ResumeError
from iokit.loader import LoaderState, open_loader
from iokit.shards import write_shards

BATCH, BLOCK, EPOCHS = 4, 31, 2

CHILD = textwrap.dedent("""
    import hashlib, json, os, sys, time
    from iokit.atomic import write_bytes_atomic
    from iokit.loader import open_loader

    folder, out, settings, mode, stop_after = sys.argv[1:6]
    settings, stop_after, parent = json.loads(settings), int(stop_after), os.getppid()
    resume = open(f"{out}/state.json").read() if mode == "resume" else None
    handed = 0
    with open_loader(folder, resume=resume, **settings) as loader, \\
            open(f"{out}/{mode}.log", "a") as log:
        while loader.epoch < EPOCHS:
            for b in loader:
                digest = hashlib.blake2b(b.x.tobytes() + b.y.tobytes(), digest_size=8)
                log.write(f"{b.position} {b.index} {digest.hexdigest()}\\n")
                log.flush()
                if mode == "resume":
                    continue
                # a training step would run here; then the checkpoint
                write_bytes_atomic(f"{out}/state.json", loader.state().to_json().encode())
                handed += 1
                if handed == stop_after:
                    print("checkpointed", flush=True)
                    while os.getppid() == parent:  # killed here, mid-epoch (and never
                        time.sleep(0.05)  # outlives the test)
""").replace("EPOCHS", str(EPOCHS))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(11)
    docs = [rng.integers(0, 1000, size=int(n)) for n in rng.integers(50, 900, size=60)]
    write_shards(docs, out, vocab_size=1000, max_shard_bytes=4000)
    return out


def digests(loader, epochs=EPOCHS):
    out = []
    while loader.epoch < epochs:
        for b in loader:
            d = hashlib.blake2b(b.x.tobytes() + b.y.tobytes(), digest_size=8).hexdigest()
            out.append(f"{b.position} {b.index} {d}")
    return out


def run_child(folder, out, settings, mode, stop_after=0):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(out),
                             json.dumps(settings), mode, str(stop_after)],
                            stdout=subprocess.PIPE, env=env, text=True)


@pytest.mark.parametrize("workers,resumed_with,rank,epoch", [
    (1, 2, None, 0), (2, 4, None, 0), (4, 1, None, 1), (2, 0, 1, 1)])
def test_kill_and_resume_yields_the_rest_of_the_epoch(folder, tmp_path, workers, resumed_with,
                                                      rank, epoch):
    settings = dict(batch_size=BATCH, block_size=BLOCK, prefetch=3, seed=5, shuffle=True)
    if rank is not None:
        settings.update(rank=rank, world_size=2)
    with open_loader(folder, workers=0, **settings) as loader:
        n0 = loader.n_batches
        whole = digests(loader)  # one process, no interruption
    stop_after = (n0 if epoch else 0) + 3  # mid-epoch: 3 batches into epoch `epoch`
    child = run_child(folder, tmp_path, {**settings, "workers": workers}, "run", stop_after)
    try:
        assert child.stdout.readline().strip() == "checkpointed"
        child.send_signal(signal.SIGKILL)  # no clean-up runs: as a crash or a pre-emption
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    state = LoaderState.from_json((tmp_path / "state.json").read_text())
    assert (state.epoch, state.position) == (epoch, 3)
    first = (tmp_path / "run.log").read_text().splitlines()
    resumed = run_child(folder, tmp_path, {**settings, "workers": resumed_with}, "resume")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    rest = (tmp_path / "resume.log").read_text().splitlines()
    assert len(first) == stop_after and rest
    assert first + rest == whole  # the same batches, in the same order, none twice


def test_state_at_every_position_resumes_in_process(folder):
    settings = dict(batch_size=BATCH, block_size=BLOCK, prefetch=2, seed=2, shuffle=True)
    with open_loader(folder, workers=2, **settings) as loader:
        whole = digests(loader, epochs=1)
    n = len(whole)
    for stop in (0, 1, n // 2, n - 1, n):
        with open_loader(folder, workers=3, **settings) as loader:
            it = iter(loader)
            for _ in range(stop):
                next(it)
            state = loader.state()
            it.close()
        assert (state.epoch, state.position) == ((0, stop) if stop < n else (1, 0))
        saved = json.loads(json.dumps(state.to_dict()))  # as it would be stored
        with open_loader(folder, workers=1, resume=saved, **settings) as loader:
            rest = digests(loader, epochs=1) if stop < n else []
        assert whole[:stop] + rest == whole


def test_each_worker_reads_a_disjoint_share_of_the_ranks_windows(folder):
    # 1 ms per request on the simulated network file system: every worker gets batches
    with open_loader(folder, rank=0, world_size=2, batch_size=BATCH, block_size=BLOCK,
                     workers=3, prefetch=4, storage="network-fs", limit=18) as loader:
        src = loader.source
        for _epoch in range(2):  # a new share every epoch
            shares: dict = {}
            for b in loader:
                shares.setdefault(b.worker, []).extend(src.batch_windows(b.index))
            windows = [w for k in range(loader.n_batches) for w in src.batch_windows(k)]
            assert len(shares) >= 2  # the rank's windows were split between workers
            mine = [set(ws) for ws in shares.values()]
            assert sum(len(m) for m in mine) == len(set().union(*mine))  # disjoint
            assert set().union(*mine) == set(windows)  # together, every window of the rank
            assert all(len(w) == BLOCK + 1 for w in windows)


def test_batch_order_does_not_depend_on_the_worker_count(folder):
    got = {}
    for workers in (0, 1, 2, 4):
        with open_loader(folder, rank=1, world_size=2, batch_size=BATCH, block_size=BLOCK,
                         workers=workers, prefetch=3, seed=4) as loader:
            got[workers] = digests(loader)
    assert got[0] == got[1] == got[2] == got[4]


def test_resume_states_that_do_not_fit_are_refused(folder, tmp_path):
    settings = dict(batch_size=BATCH, block_size=BLOCK, seed=1, shuffle=True)
    with open_loader(folder, **settings) as loader:
        it = iter(loader)
        next(it), next(it)
        state = loader.state()
        it.close()
    other = tmp_path / "other"
    write_shards([np.arange(3000) % 1000], other, vocab_size=1000)
    with pytest.raises(ResumeError, match=r"another shard set.*open the loader on the shards"):
        open_loader(other, resume=state, **settings)
    with pytest.raises(ResumeError, match=r"another epoch plan \(seed: saved 1, here 2\)"):
        open_loader(folder, resume=state, **{**settings, "seed": 2})
    with pytest.raises(ResumeError, match=r"another epoch plan .*batch_size: saved 4, here 8"):
        open_loader(folder, resume=state, **{**settings, "batch_size": 8})
    with pytest.raises(ResumeError, match="another epoch plan"):
        open_loader(folder, resume=state, **{**settings, "shuffle": False})
    with pytest.raises(ResumeError, match=r"rank: saved None, here 0"):
        open_loader(folder, resume=state, rank=0, world_size=2, **settings)
    d = state.to_dict()
    with pytest.raises(ResumeError, match="does not match its fingerprint"):
        LoaderState.from_dict({**d, "plan": {**d["plan"], "seed": 9}})
    with pytest.raises(ResumeError, match="lacks position"):
        LoaderState.from_dict({k: v for k, v in d.items() if k != "position"})
    with pytest.raises(ResumeError, match="position must be a whole number"):
        LoaderState.from_dict({**d, "position": -1})
    with pytest.raises(ResumeError, match="not JSON"):
        LoaderState.from_json("{half a state")
    with pytest.raises(ResumeError, match="version"):
        LoaderState.from_dict({**d, "version": 99})
    with pytest.raises(ResumeError, match=r"at batch 100,000 of epoch 0"):
        open_loader(folder, resume={**d, "position": 100_000}, **settings)
    # the same shards and settings, any worker count: accepted
    with open_loader(folder, resume=state.to_json(), workers=4, **settings) as loader:
        assert loader.state() == state
