"""Threads sharing one simulated store share its link, and never deadlock on it."""

import threading
import time

from iokit.storage import SimulatedStore, StoragePreset


def test_threads_share_the_link_without_deadlock(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 65536)
    preset = StoragePreset("test", 0.0005, 1e9, 20e6, "a slow shared link")
    for _ in range(5):  # a fresh store each time: the first reads race to open the link state
        store = SimulatedStore(preset, state_file=None)
        start = time.monotonic()
        threads = [threading.Thread(target=store.read, args=(path, 0, 65536))
                   for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        elapsed = time.monotonic() - start
        store.close()
        assert not any(t.is_alive() for t in threads)
        # Every byte crossed the one link: 16 × 64 KiB at 20 MB/s, never faster.
        assert elapsed >= 16 * 65536 / 20e6
