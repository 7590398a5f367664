"""Fault knobs seen by Certipy 5.1 (an independent client): delayed replies and a chosen HRESULT, over DCOM and
MS-ICPR, set and cleared while the lab CA runs. Own server on 127.0.0.62 with a copy of the lab's accounts/PKI."""

import os
import subprocess
import time

import pytest

import wcce_helpers as H
from adcslab.faults import clear_faults, set_faults

ADDRESS = "127.0.0.62"

pytestmark = pytest.mark.certipy

if not os.path.exists(H.CERTIPY):
    pytestmark = [pytest.mark.certipy, pytest.mark.skip(
        reason="!!! Certipy tests SKIPPED: %s is missing; run `make venv` (it creates .venv-certipy with "
               "certipy-ad 5.1) to run them !!!" % H.CERTIPY)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root (the lab runs as root)")
    assert H.address_free(ADDRESS), "port 135 on %s is already in use" % ADDRESS
    state = H.copy_lab_state(str(tmp_path_factory.mktemp("faults-certipy")))
    if state is None:
        pytest.skip("the lab has not been set up (no %s/accounts.json or pki/): run make lab-up" % H.LAB_STATE)
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(autouse=True)
def no_faults(server):
    clear_faults(server.state_dir)
    yield
    clear_faults(server.state_dir)


def certipy(tmp_path, *args, timeout=120):
    enroller = H.lab_account("enroller")
    cmd = [H.CERTIPY, "req", "-u", enroller["upn"], "-p", enroller["password"], "-target-ip", ADDRESS,
           "-dc-ip", ADDRESS, "-ns", ADDRESS, "-ca", "LAB-CA", "-timeout", "10", "-template", "User"] + list(args)
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    return result.stdout + result.stderr, time.monotonic() - start


TRANSPORTS = pytest.mark.parametrize("transport", [["-dcom"], ["-dynamic-endpoint"]], ids=["dcom", "rpc"])


@TRANSPORTS
def test_certipy_waits_for_delayed_reply(server, tmp_path, transport):
    out, fast = certipy(tmp_path, *transport, "-out", "fast")
    assert "Successfully requested certificate" in out, out + server.log()
    method = "Request" if transport == ["-dcom"] else "CertServerRequest"
    set_faults(server.state_dir, delay_seconds=3, method=method, times=1)
    out, slow = certipy(tmp_path, *transport, "-out", "slow")
    assert "Successfully requested certificate" in out, out + server.log()
    assert slow >= 3.0 and slow > fast, (fast, slow)
    assert "fault delay_seconds" in server.log()


@TRANSPORTS
def test_certipy_reports_chosen_hresult_then_recovers(server, tmp_path, transport):
    set_faults(server.state_dir, hresult=0x80070005)
    out, _ = certipy(tmp_path, *transport, "-out", "refused")
    assert "Successfully requested certificate" not in out, out
    assert "0x80070005" in out or "E_ACCESSDENIED" in out, out
    assert not os.path.exists(tmp_path / "refused.pfx")
    clear_faults(server.state_dir)
    out, _ = certipy(tmp_path, *transport, "-out", "ok")
    assert "Successfully requested certificate" in out, out + server.log()


def test_certipy_sees_chosen_disposition(server, tmp_path):
    set_faults(server.state_dir, disposition=0x80094012, times=1)
    out, _ = certipy(tmp_path, "-dynamic-endpoint", "-out", "denied")
    assert "Successfully requested certificate" not in out, out
    assert "0x80094012 - CERTSRV_E_TEMPLATE_DENIED" in out, out
    assert "Request ID is 90000" in out, out  # the synthetic request ID of a forced disposition
    out, _ = certipy(tmp_path, "-dynamic-endpoint", "-out", "ok")
    assert "Successfully requested certificate" in out, out + server.log()
