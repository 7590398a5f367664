"""The demo playbook (what `make demo` runs) against the lab, called by its collection name."""

import pytest

pytestmark = pytest.mark.lab


def test_demo_playbook_by_collection_name(lab, ansible):
    rc, out = ansible.playbook("adcs.enrollment.demo", extra_vars={"lab_json": lab["state_dir"] + "/lab.json"})
    assert rc == 0, out
    tasks = out["plays"][0]["tasks"]
    info = tasks[0]["hosts"]["localhost"]
    assert not info.get("failed"), info
    assert [ca["name"] for ca in info["certificate_authorities"]] == [lab["ca"]["name"]]
    shown = tasks[1]["hosts"]["localhost"]["msg"]
    assert "Enrollment services: ['LAB-CA']" in shown
    assert any(line.startswith("enroller may enroll for:") and "'WebServer'" in line for line in shown)
    assert "enroller may not enroll for: ['Machine']" in shown
    assert out["stats"]["localhost"]["failures"] == 0
