import os

import pytest

from kernelmon.core import PathOutsideRoot
from kernelmon.core.workdir import cwd_for_path


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "a" / "b").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", r / "link-out")
    os.symlink(r / "a", r / "link-in")
    return r


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (None, ""),
        ("", ""),
        ("a", "a"),
        ("a/b", "a/b"),
        ("a/b/", "a/b"),
        ("./a", "a"),
        ("a/../a/b", "a/b"),
        ("a/b/nope/deeper", "a/b"),  # walks up while the folder does not exist
        ("nope", ""),
        ("link-in/b", "a/b"),  # a link that stays inside is fine
    ],
)
def test_paths_inside_root(root, path, expected):
    want = str(root / expected) if expected else str(root)
    assert cwd_for_path(str(root), path) == want


@pytest.mark.parametrize(
    "path", ["..", "../..", "a/../../x", "/etc", "/", "link-out", "link-out/x", "a\0b"]
)
def test_paths_leaving_root_are_refused(root, path):
    with pytest.raises(PathOutsideRoot) as info:
        cwd_for_path(str(root), path)
    assert "leaves the root folder" in str(info.value)


def test_root_given_through_a_link(tmp_path, root):
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert cwd_for_path(str(alias), "a") == str(root / "a")
