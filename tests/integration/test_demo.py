"""The demo playbook (what `make demo` runs) against the lab, called by its collection name."""

import os
import stat

import pytest
from cryptography import x509

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
    # the machine templates (Machine and the autoenrollment ones) are for Domain Computers only
    assert ("enroller may not enroll for: ['AutoApproval', 'AutoDenied', 'AutoGrant', 'AutoLinuxServer', "
            "'AutoLinuxServerV2', 'AutoRASigned', 'Machine']") in shown
    assert out["stats"]["localhost"]["failures"] == 0

    # the second play issues a certificate for this machine with the certificate role
    play = out["plays"][1]
    shown = [t for t in play["tasks"] if t["task"]["name"] == "Show the certificate of this machine"][0]
    result = shown["hosts"]["localhost"]
    assert not result.get("failed"), result
    lines = result["results"][0]["msg"]
    assert lines[0] in ("Certificate this-machine: issued", "Certificate this-machine: unchanged",
                        "Certificate this-machine: renewed"), lines
    assert lines[1].startswith("Subject: CN=") and "LAB-CA" in lines[2] and lines[3].startswith("Expires: 20")
    demo_dir = os.path.join(lab["state_dir"], "demo")
    paths = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines[4:]}
    assert paths["Private key"] == os.path.join(demo_dir, "private", "this-machine.key")
    assert paths["Certificate"] == os.path.join(demo_dir, "certs", "this-machine.crt")
    for path in paths.values():
        assert os.path.isfile(path), path
    assert stat.S_IMODE(os.stat(paths["Private key"]).st_mode) == 0o600
    with open(paths["Certificate"], "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    assert lines[1] == "Subject: " + cert.subject.rfc4514_string()
    assert out["stats"]["localhost"]["failures"] == 0

    # a second run changes nothing
    rc, out = ansible.playbook("adcs.enrollment.demo", extra_vars={"lab_json": lab["state_dir"] + "/lab.json"})
    assert rc == 0, out
    assert out["stats"]["localhost"]["changed"] == 0, out["stats"]
