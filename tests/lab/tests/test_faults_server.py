"""Fault knobs (adcslab.faults, STATE_DIR/faults.json) observed from impacket's DCOM and MS-ICPR clients.

The module runs its own lab CA server on 127.0.0.61 (port 135, root) with a private state dir holding a copy of
the lab's accounts.json and PKI; knobs are changed while it runs, through the Python API and the CLI."""

import os
import socket
import time

import pytest
from cryptography import x509
from impacket.dcerpc.v5 import dcomrt
from impacket.dcerpc.v5.rpcrt import DCERPCException, RPC_C_AUTHN_LEVEL_PKT_PRIVACY
from impacket.uuid import uuidtup_to_bin

import wcce_helpers as H
from adcslab.faults import clear_faults, set_faults
from adcslab.wcce import constants as C

ADDRESS = "127.0.0.61"
IID_D = uuidtup_to_bin((C.IID_ICERTREQUESTD, "0.0"))
IID_D2 = uuidtup_to_bin((C.IID_ICERTREQUESTD2, "0.0"))
E_ACCESSDENIED = 0x80070005
TEMPLATE_DENIED = 0x80094012


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab CA listens on port 135, which needs root (the lab runs as root)")
    assert H.address_free(ADDRESS), "port 135 on %s is already in use" % ADDRESS
    state = H.copy_lab_state(str(tmp_path_factory.mktemp("faults-state")))
    if state is None:
        pytest.skip("the lab has not been set up (no %s/accounts.json or pki/): run make lab-up" % H.LAB_STATE)
    proc = H.ServerProcess(state, ADDRESS).start()
    yield proc
    rc = proc.stop()
    assert rc == 0, "lab CA did not exit cleanly (rc %r)\n%s" % (rc, proc.log())


@pytest.fixture(autouse=True)
def no_faults(server):
    clear_faults(server.state_dir)
    yield
    clear_faults(server.state_dir)


@pytest.fixture()
def enroller():
    return H.lab_account("enroller")


@pytest.fixture()
def connect(enroller):
    conns = []

    def _connect():
        # impacket caches the object exporter connection per target and thread across DCOMConnections: a fresh
        # client (as after a lost connection) starts without it.
        dcomrt.INTERFACE.CONNECTIONS.pop(ADDRESS, None)
        conn = dcomrt.DCOMConnection(ADDRESS, enroller["sam"], enroller["password"], "LAB", oxidResolver=True,
                                     authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        conns.append(conn)
        return conn

    yield _connect
    for conn in conns:
        try:
            conn.disconnect()
        except Exception:
            pass


def icpr(server, enroller):
    return H.icpr_connect(ADDRESS, server.endpoints["icpr_port"], enroller["sam"], enroller["password"])


def ping(iface, check=True):
    req = H.Ping()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    return iface.call(req, check=check)


def issued(resp):
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == C.DISPOSITION_ISSUED, H.text_of(
        resp["pctbDispositionMessage"])
    return x509.load_der_x509_certificate(H.blob_bytes(resp["pctbEncodedCert"]))


def log_has(server, text):
    return text in server.log()


def test_no_faults_file_means_normal_service(server, connect):
    assert not os.path.exists(os.path.join(server.state_dir, "faults.json"))
    iface = H.dcom_cert_iface(connect(), IID_D)
    key, csr = H.make_csr()
    cert = issued(H.wcce_request(iface, csr))
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


# ---- delay_seconds -------------------------------------------------------------------------------------
def test_delay_seconds_once_then_normal(server, connect):
    iface = H.dcom_cert_iface(connect(), IID_D)
    set_faults(server.state_dir, delay_seconds=1.5, times=1)
    start = time.monotonic()
    assert ping(iface)["ErrorCode"] == 0
    assert time.monotonic() - start >= 1.4
    start = time.monotonic()
    assert ping(iface)["ErrorCode"] == 0
    assert time.monotonic() - start < 1.0, "times=1 must apply once"
    assert log_has(server, "fault delay_seconds: ICertRequestD Ping")


def test_delay_seconds_limited_to_method_and_cleared(server, connect):
    iface = H.dcom_cert_iface(connect(), IID_D)
    set_faults(server.state_dir, delay_seconds=1.2, method="Request")
    start = time.monotonic()
    ping(iface)
    assert time.monotonic() - start < 1.0, "Ping is not Request"
    _, csr = H.make_csr()
    start = time.monotonic()
    issued(H.wcce_request(iface, csr))
    assert time.monotonic() - start >= 1.1
    start = time.monotonic()
    issued(H.wcce_request(iface, csr))
    assert time.monotonic() - start >= 1.1, "no times limit: every Request is delayed"
    clear_faults(server.state_dir)
    start = time.monotonic()
    issued(H.wcce_request(iface, csr))
    assert time.monotonic() - start < 1.0


def test_delay_seconds_on_icpr(server, enroller):
    set_faults(server.state_dir, delay_seconds=1.2, times=1)
    dce = icpr(server, enroller)
    _, csr = H.make_csr()
    start = time.monotonic()
    resp = H.icpr_request(dce, csr)
    assert time.monotonic() - start >= 1.1
    assert resp["pdwDisposition"] == C.DISPOSITION_ISSUED
    dce.disconnect()


# ---- drop_connection -----------------------------------------------------------------------------------
def test_drop_connection_before_processing_once(server, connect):
    iface = H.dcom_cert_iface(connect(), IID_D)
    set_faults(server.state_dir, drop_connection=True, times=1)
    _, csr = H.make_csr()
    before = H.ca_cli(server.state_dir, "list").stdout.count('"request_id"')
    with pytest.raises(Exception) as info:
        H.wcce_request(iface, csr)
    assert not isinstance(info.value, dcomrt.DCERPCSessionError) or "reset" in str(info.value).lower()
    assert H.ca_cli(server.state_dir, "list").stdout.count('"request_id"') == before, "not processed"
    assert log_has(server, "fault drop_connection: closing")
    # times=1: a new connection gets normal service
    iface = H.dcom_cert_iface(connect(), IID_D)
    issued(H.wcce_request(iface, csr))


def test_drop_connection_after_processing_on_icpr(server, enroller):
    set_faults(server.state_dir, drop_connection="after", method="CertServerRequest")
    dce = icpr(server, enroller)
    _, csr = H.make_csr()
    before = H.ca_cli(server.state_dir, "list").stdout.count('"request_id"')
    with pytest.raises(Exception):
        H.icpr_request(dce, csr)
    assert H.ca_cli(server.state_dir, "list").stdout.count('"request_id"') == before + 1, \
        "the request was processed (issued) and only the reply was lost"
    assert log_has(server, "processed, closing")
    clear_faults(server.state_dir)
    dce = icpr(server, enroller)
    assert H.icpr_request(dce, csr)["pdwDisposition"] == C.DISPOSITION_ISSUED
    dce.disconnect()


# ---- hresult -------------------------------------------------------------------------------------------
def test_hresult_as_return_value_once(server, connect):
    iface = H.dcom_cert_iface(connect(), IID_D)
    set_faults(server.state_dir, hresult="0x80070005", times=1)
    _, csr = H.make_csr()
    with pytest.raises(DCERPCException) as info:
        H.wcce_request(iface, csr, check=True)
    assert info.value.get_error_code() == E_ACCESSDENIED
    issued(H.wcce_request(iface, csr))   # applied once
    assert log_has(server, "fault hresult: ICertRequestD Request")


def test_hresult_out_parameters_and_clear(server, connect):
    iface = H.dcom_cert_iface(connect(), IID_D2)
    set_faults(server.state_dir, hresult=TEMPLATE_DENIED)
    _, csr = H.make_csr()
    resp = H.wcce_request(iface, csr)
    assert resp["ErrorCode"] == TEMPLATE_DENIED
    assert resp["pdwDisposition"] == TEMPLATE_DENIED and H.blob_bytes(resp["pctbEncodedCert"]) == b""
    assert "0x80094012" in H.text_of(resp["pctbDispositionMessage"])
    req = H.GetCAProperty()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    req["PropID"], req["PropIndex"], req["PropType"] = 6, 0, 4
    resp = iface.call(req, check=False)
    assert resp["ErrorCode"] == TEMPLATE_DENIED and H.blob_bytes(resp["pctbPropertyValue"]) == b""
    clear_faults(server.state_dir)
    resp = iface.call(req, check=False)
    assert resp["ErrorCode"] == 0 and H.text_of(resp["pctbPropertyValue"]) == "LAB-CA"


def test_hresult_on_activation(server, connect):
    set_faults(server.state_dir, hresult=E_ACCESSDENIED, method="RemoteCreateInstance", times=1)
    with pytest.raises(DCERPCException) as info:
        H.dcom_cert_iface(connect(), IID_D)
    assert info.value.get_error_code() == E_ACCESSDENIED
    assert ping(H.dcom_cert_iface(connect(), IID_D))["ErrorCode"] == 0


def test_hresult_on_icpr(server, enroller):
    set_faults(server.state_dir, hresult=E_ACCESSDENIED, times=1)
    dce = icpr(server, enroller)
    _, csr = H.make_csr()
    resp = H.icpr_request(dce, csr)
    assert resp["ErrorCode"] == E_ACCESSDENIED
    assert H.icpr_request(dce, csr)["pdwDisposition"] == C.DISPOSITION_ISSUED
    dce.disconnect()


# ---- disposition ---------------------------------------------------------------------------------------
def test_disposition_denied_with_message(server, connect):
    iface = H.dcom_cert_iface(connect(), IID_D)
    set_faults(server.state_dir, disposition=TEMPLATE_DENIED, times=1)
    _, csr = H.make_csr()
    resp = H.wcce_request(iface, csr)
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == TEMPLATE_DENIED
    message = H.text_of(resp["pctbDispositionMessage"])
    assert message.startswith("Denied by Policy Module  0x80094012, The permissions on the certificate template")
    assert H.blob_bytes(resp["pctbEncodedCert"]) == b""
    issued(H.wcce_request(iface, csr))
    assert log_has(server, "fault disposition: Request")


def test_disposition_pending_over_icpr_and_request2(server, connect, enroller):
    set_faults(server.state_dir, disposition=5)
    dce = icpr(server, enroller)
    _, csr = H.make_csr()
    resp = H.icpr_request(dce, csr)
    assert resp["ErrorCode"] == 0 and resp["pdwDisposition"] == C.DISPOSITION_UNDER_SUBMISSION
    assert resp["pdwRequestId"] > 900000
    assert H.text_of(resp["pctbDispositionMessage"]) == "Taken Under Submission"
    dce.disconnect()
    set_faults(server.state_dir, disposition=2, message="Denied by the test", request_id=4242)
    iface = H.dcom_cert_iface(connect(), IID_D2)
    req = H.Request2()
    req["pwszAuthority"] = H.wstr("LAB-CA")
    req["dwFlags"] = 0
    req["pwszSerialNumber"] = H.NULL
    req["pdwRequestId"] = 0
    req["pwszAttributes"] = H.wstr("CertificateTemplate:User")
    req["pctbRequest"] = H.blob(csr)
    resp = iface.call(req, check=False)
    assert (resp["ErrorCode"], resp["pdwDisposition"], resp["pdwRequestId"]) == (0, 2, 4242)
    assert H.text_of(resp["pctbDispositionMessage"]) == "Denied by the test"


# ---- wrong_key -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["dcom", "icpr"])
def test_wrong_key_issues_valid_certificate_for_another_key(server, connect, enroller, transport, tmp_path):
    set_faults(server.state_dir, wrong_key=True, times=1)
    key, csr = H.make_csr()
    if transport == "dcom":
        iface = H.dcom_cert_iface(connect(), IID_D)
        send = lambda: H.wcce_request(iface, csr)  # noqa: E731
    else:
        dce = icpr(server, enroller)
        send = lambda: H.icpr_request(dce, csr)  # noqa: E731
    resp = send()
    assert resp["pdwDisposition"] == C.DISPOSITION_ISSUED, H.text_of(resp["pctbDispositionMessage"])
    cert = x509.load_der_x509_certificate(H.blob_bytes(resp["pctbEncodedCert"]))
    assert cert.public_key().public_numbers() != key.public_key().public_numbers()
    assert cert.public_key().key_size == key.key_size
    result = H.openssl_verify(server.state_dir, H.blob_bytes(resp["pctbEncodedCert"]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log_has(server, "fault wrong_key")
    # once: the next certificate is for the request's key
    cert = x509.load_der_x509_certificate(H.blob_bytes(send()["pctbEncodedCert"]))
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


# ---- refuse_connections --------------------------------------------------------------------------------
def _tcp_exchange(port):
    """Connect and send a byte; return True when the server keeps the connection open for 0.3 s."""
    try:
        s = socket.create_connection((ADDRESS, port), timeout=5)
    except (ConnectionResetError, ConnectionRefusedError):  # the reset can win the race with connect()
        return False
    try:
        s.sendall(b"\x05")
        s.settimeout(0.3)
        try:
            return s.recv(1) != b""
        except socket.timeout:
            return True
    except (ConnectionResetError, BrokenPipeError):
        return False
    finally:
        s.close()


def test_refuse_connections_on_every_port_then_clear(server, connect):
    ports = [server.endpoints["rpc_port"], server.endpoints["object_exporter_port"], server.endpoints["icpr_port"]]
    assert all(_tcp_exchange(p) for p in ports)
    set_faults(server.state_dir, refuse_connections=True)
    assert not any(_tcp_exchange(p) for p in ports)
    with pytest.raises(Exception):  # impacket's connect() returns before the reset shows; the bind fails
        H.dcom_cert_iface(connect(), IID_D)
    assert log_has(server, "fault refuse_connections")
    clear_faults(server.state_dir)
    assert ping(H.dcom_cert_iface(connect(), IID_D))["ErrorCode"] == 0


def test_refuse_connections_once(server, connect):
    set_faults(server.state_dir, refuse_connections=True, times=1)
    with pytest.raises(Exception):  # impacket's connect() returns before the reset shows; the bind fails
        H.dcom_cert_iface(connect(), IID_D)
    assert ping(H.dcom_cert_iface(connect(), IID_D))["ErrorCode"] == 0


def test_refuse_connections_one_port(server, connect, enroller):
    set_faults(server.state_dir, refuse_connections=True, port=server.endpoints["icpr_port"])
    assert not _tcp_exchange(server.endpoints["icpr_port"])
    assert ping(H.dcom_cert_iface(connect(), IID_D))["ErrorCode"] == 0


# ---- slow_activation_seconds ---------------------------------------------------------------------------
def test_slow_activation_once(server, connect):
    set_faults(server.state_dir, slow_activation_seconds=1.5, times=1)
    conn = connect()
    start = time.monotonic()
    iface = H.dcom_cert_iface(conn, IID_D)
    assert time.monotonic() - start >= 1.4
    start = time.monotonic()
    ping(iface)
    assert time.monotonic() - start < 1.0, "only activation is slow"
    start = time.monotonic()
    H.dcom_cert_iface(connect(), IID_D)
    assert time.monotonic() - start < 1.0, "times=1"
    assert log_has(server, "fault slow_activation_seconds: RemoteCreateInstance")


# ---- CLI -----------------------------------------------------------------------------------------------
def test_cli_set_show_clear(server, connect):
    res = H.faults_cli(server.state_dir, "set", "hresult=0x80070005", "times=2", "method=Ping")
    assert res.returncode == 0, res.stderr
    assert "hresult=0x80070005 [times=2, method=Ping] (applied 0, 2 left)" in res.stdout
    iface = H.dcom_cert_iface(connect(), IID_D)
    assert ping(iface, check=False)["ErrorCode"] == E_ACCESSDENIED
    res = H.faults_cli(server.state_dir, "show")
    assert "(applied 1, 1 left)" in res.stdout, res.stdout
    res = H.faults_cli(server.state_dir, "clear")
    assert res.returncode == 0 and "no faults set" in res.stdout
    assert ping(iface, check=False)["ErrorCode"] == 0
    res = H.faults_cli(server.state_dir, "set", "nonsense=1")
    assert res.returncode == 2 and "unknown key" in res.stderr and "Traceback" not in res.stderr
