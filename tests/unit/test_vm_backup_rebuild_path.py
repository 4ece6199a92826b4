"""vm_backup's new disk for a rebuild: a second rebuild on the same OS image (the next
hop) gets a new file instead of being refused, and never the one the domain boots."""
from tests.loader import load

vm_backup = load("modules", "vm_backup")


def test_first_rebuild_names_the_disk_after_the_domain_and_the_image():
    assert vm_backup._new_disk_path(  # pylint: disable=protected-access
        "/v", "ctl01", "/img/trixie.qcow2", "/v/ctl01.qcow2") == "/v/ctl01-trixie.qcow2"


def test_a_rebuild_on_the_image_it_already_boots_gets_the_next_generation():
    new = vm_backup._new_disk_path  # pylint: disable=protected-access
    assert new("/v", "ctl01", "/img/trixie.qcow2", "/v/ctl01-trixie.qcow2") == \
        "/v/ctl01-trixie-2.qcow2"
    assert new("/v", "ctl01", "/img/trixie.qcow2", "/v/ctl01-trixie-2.qcow2") == \
        "/v/ctl01-trixie.qcow2"
