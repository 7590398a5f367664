"""Certipy 5.1 (an independent client) against the lab CA server: DCOM and MS-ICPR enrollment, retrieval,
and refusals. The server runs on 127.0.0.33 with a temporary state dir.

Certipy gets ``-dc-ip``/``-ns`` set to the test address so it never sends a DNS query off the machine (no
name server listens there; nothing needs resolving because ``-target-ip`` is given)."""

import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

import wcce_helpers as H

ADDRESS = "127.0.0.33"
PASSWORD = "Certipy-Pa55!"

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
    state = str(tmp_path_factory.mktemp("labca-certipy"))
    H.write_accounts(state, {"enroller": PASSWORD})
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def certipy(tmp_path, *args, password=PASSWORD, timeout=120):
    cmd = [H.CERTIPY, "req", "-u", "enroller@lab.adcs.test", "-p", password, "-target-ip", ADDRESS,
           "-dc-ip", ADDRESS, "-ns", ADDRESS, "-ca", "LAB-CA", "-timeout", "10"] + list(args)
    result = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    return result, result.stdout + result.stderr


def load_pfx(path):
    with open(path, "rb") as fh:
        key, cert, _ = pkcs12.load_key_and_certificates(fh.read(), None)
    return key, cert


def verify(server, cert, tmp_path):
    from adcslab.pki import ensure_pki

    pki = ensure_pki(server.state_dir)
    path = tmp_path / "issued.pem"
    from cryptography.hazmat.primitives import serialization
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    res = subprocess.run(["openssl", "verify", "-CAfile", pki.root_cert_path, "-untrusted", pki.ca_cert_path,
                          str(path)], capture_output=True, text=True)
    assert res.returncode == 0 and ": OK" in res.stdout, res.stdout + res.stderr


def test_certipy_dcom_request(server, tmp_path):
    result, out = certipy(tmp_path, "-template", "User", "-dcom", "-out", "dcom")
    assert result.returncode == 0, out + server.log()
    assert "Successfully requested certificate" in out, out + server.log()
    key, cert = load_pfx(tmp_path / "dcom.pfx")
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    verify(server, cert, tmp_path)


def test_certipy_rpc_request_and_retrieve(server, tmp_path):
    result, out = certipy(tmp_path, "-template", "User", "-dynamic-endpoint", "-out", "rpc")
    assert result.returncode == 0 and "Successfully requested certificate" in out, out + server.log()
    _, cert = load_pfx(tmp_path / "rpc.pfx")
    verify(server, cert, tmp_path)
    request_id = [line for line in out.splitlines() if "Request ID is" in line][0].rsplit(" ", 1)[1]
    result, out = certipy(tmp_path, "-retrieve", request_id, "-dynamic-endpoint", "-out", "again")
    assert "Successfully retrieved certificate" in out, out + server.log()
    with open(tmp_path / "again.crt", "rb") as fh:
        assert x509.load_pem_x509_certificate(fh.read()) == cert


def test_certipy_rpc_default_endpoint_order(server, tmp_path):
    """Without -dynamic-endpoint Certipy tries \\pipe\\cert over SMB first, then the endpoint mapper."""
    result, out = certipy(tmp_path, "-template", "User", "-out", "rpc2")
    assert "Successfully requested certificate" in out, out + server.log()


def test_certipy_dcom_retrieve_is_rejected_cleanly(server, tmp_path):
    """Certipy's DCOM retrieve sends a CERTTRANSBLOB where the attributes string belongs: a clean fault."""
    result, out = certipy(tmp_path, "-retrieve", "1", "-dcom")
    assert "rpc_x_bad_stub_data" in out, out
    assert server.proc.poll() is None
    assert "Traceback" not in server.log()
    # and the server keeps serving
    result, out = certipy(tmp_path, "-template", "User", "-dcom", "-out", "after")
    assert "Successfully requested certificate" in out, out + server.log()


@pytest.mark.parametrize("transport", [["-dcom"], ["-dynamic-endpoint"]], ids=["dcom", "rpc"])
def test_certipy_wrong_password_is_denied(server, tmp_path, transport):
    result, out = certipy(tmp_path, "-template", "User", *transport, password="wrong-password")
    assert "Successfully requested" not in out
    assert "access_denied" in out.lower() or "access denied" in out.lower(), out


@pytest.mark.parametrize("transport", [["-dcom"], ["-dynamic-endpoint"]], ids=["dcom", "rpc"])
def test_certipy_archive_key_reads_exchange_cert_over_icertrequestd2(server, tmp_path, transport):
    """-archive-key: GetCAProperty(0xF) over ICertRequestD2 (activated directly), then a CMC request."""
    result, out = certipy(tmp_path, "-template", "User", "-archive-key", *transport, "-out", "archived")
    assert "Retrieved CAX certificate" in out, out + server.log()
    assert "Successfully requested certificate" in out, out + server.log()
    key, cert = load_pfx(tmp_path / "archived.pfx")
    verify(server, cert, tmp_path)
