"""A directory's files as data (``dpd.filetree``): what a Ray node sends the driver. A mirror sends
what changed and what went; the receiver writes a name only after what it names."""

import os

from dpd.filetree import FileTree, Mirror


def test_a_mirror_sends_what_changed_since_its_last_snapshot_and_what_was_removed(tmp_path):
    node, driver = tmp_path / "node", tmp_path / "driver"
    (node / "checkpoints" / "step_1").mkdir(parents=True)
    (node / "checkpoints" / "step_1" / "model.zip").write_bytes(b"one")
    (node / "manifest.json").write_text('{"checkpoint": "checkpoints/step_1"}')
    mirror = Mirror(node)
    first = mirror.changes()
    assert sorted(first.files) == ["checkpoints/step_1/model.zip", "manifest.json"] and first.removed == ()
    first.write(driver)
    assert mirror.changes() == FileTree()  # nothing new

    (node / "checkpoints" / "step_2").mkdir()
    (node / "checkpoints" / "step_2" / "model.zip").write_bytes(b"two")
    (node / "manifest.json.tmp").write_text('{"checkpoint": "checkpoints/step_2"}')
    os.replace(node / "manifest.json.tmp", node / "manifest.json")  # as atomic_write_text does: same size
    (node / "checkpoints" / "step_1" / "model.zip").unlink()
    (node / "checkpoints" / "step_1").rmdir()
    second = mirror.changes()
    assert sorted(second.files) == ["checkpoints/step_2/model.zip", "manifest.json"]
    assert second.removed == ("checkpoints/step_1/model.zip",)
    second.write(driver)
    assert FileTree.read(driver) == FileTree.read(node)
    assert not (driver / "checkpoints" / "step_1").exists()  # the folder the removal emptied


def test_a_tree_is_written_deepest_first_and_removes_last(tmp_path, monkeypatch):
    """A reader never finds a name before what it names: the checkpoint, then the manifest that
    names it, then the result above both; the old checkpoint goes only after."""
    (tmp_path / "run" / "checkpoints" / "old").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "old" / "model.zip").write_bytes(b"old")
    done = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: (done.append(str(target)), replace(source, target)))
    monkeypatch.setattr(os, "unlink", lambda path, *args, **kwargs: done.append(f"rm {path}"))
    tree = FileTree(
        {"result.json": b"{}", "run/manifest.json": b"{}", "run/checkpoints/new/model.zip": b"new"},
        removed=("run/checkpoints/old/model.zip",),
    )
    tree.write(tmp_path)
    assert [entry.replace(str(tmp_path) + "/", "") for entry in done] == [
        "run/checkpoints/new/model.zip",
        "run/manifest.json",
        "result.json",
        "rm run/checkpoints/old/model.zip",
    ]
