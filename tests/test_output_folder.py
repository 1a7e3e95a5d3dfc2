"""Output folders: the kit's error when one cannot be made, removed again if a first run fails."""

import pytest

from iokit.atomic import make_folder, output_folder
from iokit.errors import StorageError


def test_make_folder_names_the_folder_when_a_file_is_in_the_way(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(StorageError, match=r"blocker/out: cannot create the shard folder"):
        make_folder(blocker / "out", "the shard folder")


def test_a_failed_first_run_leaves_no_folder_behind(tmp_path):
    with pytest.raises(KeyboardInterrupt), output_folder(tmp_path / "new"):
        raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()


def test_a_folder_that_was_there_before_stays(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "old"):
        raise RuntimeError("fails")
    assert (tmp_path / "old").is_dir()


def test_a_folder_with_files_in_it_stays(tmp_path):
    with pytest.raises(RuntimeError), output_folder(tmp_path / "new") as out:
        (out / "kept.txt").write_text("written before the failure")
        raise RuntimeError("fails")
    assert (tmp_path / "new" / "kept.txt").exists()
