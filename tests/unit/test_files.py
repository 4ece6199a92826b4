"""leapfrog_files' space helpers: a folder's size, the free space of the filesystem that
would hold a path not made yet, and the problem line a backup's precheck reports."""
import collections

import leapfrog_files

Usage = collections.namedtuple("Usage", "total used free")


def test_tree_size_counts_every_file_below(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 23)
    assert leapfrog_files.tree_size(str(tmp_path)) == 123
    assert leapfrog_files.tree_size(str(tmp_path / "missing")) == 0


def test_free_space_of_a_path_not_made_yet_is_its_parents(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(leapfrog_files.shutil, "disk_usage",
                        lambda path: asked.append(path) or Usage(10, 5, 5 << 20))
    assert leapfrog_files.free_bytes(str(tmp_path / "no" / "such")) == 5 << 20
    assert asked == [str(tmp_path)]


def test_space_problem_says_what_lacks_how_much_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(leapfrog_files.shutil, "disk_usage", lambda path: Usage(0, 0, 5 << 20))
    assert leapfrog_files.space_problem(str(tmp_path), 5 << 20, "x", "fix") is None
    assert leapfrog_files.space_problem(str(tmp_path), 80 << 20, "a physical backup of n1",
                                        "free space there") == (
        f"not enough space for a physical backup of n1 in {tmp_path}: 80 MiB needed, 5 MiB "
        "free; free space there")


def test_backup_root_is_a_kinds_folder_under_the_pillars_or_the_default():
    assert leapfrog_files.backup_root("/srv/b", "galera") == "/srv/b/galera"
    assert leapfrog_files.backup_root("", "ovsdb") == "/var/backups/leapfrog/ovsdb"
