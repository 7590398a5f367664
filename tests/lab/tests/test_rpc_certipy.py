"""Interop: Certipy's ICPR client (``certipy req -dynamic-endpoint``) against the lab RPC engine.

Certipy resolves the ICPR endpoint with ept_map on port 135, then binds with NTLM at packet
privacy. A toy ICPR handler (not the real CA) answers CERTSRV_E_TEMPLATE_DENIED, so this checks
the engine (EPM, NTLM, sealing, NDR round trip), not enrollment.
"""

import os
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from impacket import ntlm  # noqa: E402
from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR, PBYTE, ULONG  # noqa: E402
from impacket.dcerpc.v5.ndr import NDRCALL, NDRSTRUCT  # noqa: E402

from adcslab.rpc import AccountStore, Interface, RpcServer, constants as C  # noqa: E402
from adcslab.rpc.accounts import Account  # noqa: E402
from adcslab.rpc.epm import EndpointMapper  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CERTIPY = os.path.join(REPO, ".venv-certipy", "bin", "certipy")
ICPR = "91ae6020-9e3c-11cf-8d7c-00aa00c091be"
ADDRESS = "127.0.0.27"
PASSWORD = "Certipy-Pw-1"


class CERTTRANSBLOB(NDRSTRUCT):
    structure = (("cb", ULONG), ("pb", PBYTE))


class CertServerRequest(NDRCALL):
    opnum = 0
    structure = (("dwFlags", DWORD), ("pwszAuthority", LPWSTR), ("pdwRequestId", DWORD),
                 ("pctbAttribs", CERTTRANSBLOB), ("pctbRequest", CERTTRANSBLOB))


class CertServerRequestResponse(NDRCALL):
    structure = (("pdwRequestId", DWORD), ("pdwDisposition", ULONG), ("pctbCert", CERTTRANSBLOB),
                 ("pctbEncodedCert", CERTTRANSBLOB), ("pctbDispositionMessage", CERTTRANSBLOB), ("ErrorCode", ULONG))


def _port_free(address, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.mark.skipif(not os.path.exists(CERTIPY), reason="certipy venv (.venv-certipy) not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="the endpoint mapper needs port 135 (root)")
def test_certipy_icpr_dynamic_endpoint_through_engine():
    if not _port_free(ADDRESS, 135):
        pytest.skip("%s:135 busy" % ADDRESS)
    seen = {}

    def cert_server_request(ctx, stub):
        req = CertServerRequest(stub)
        seen.update(user=ctx.auth.user, domain=ctx.auth.domain, sid=ctx.auth.account.sid, level=ctx.authn_level,
                    authority=req["pwszAuthority"], attrs=b"".join(req["pctbAttribs"]["pb"]).decode("utf-16le"),
                    csr=b"".join(req["pctbRequest"]["pb"]))
        resp = CertServerRequestResponse()
        resp["pdwRequestId"] = 17
        resp["pdwDisposition"] = 0x80094012
        for name in ("pctbCert", "pctbEncodedCert"):
            resp[name]["cb"] = 0
            resp[name]["pb"] = b""
        msg = "Denied by Policy Module\0".encode("utf-16le")
        resp["pctbDispositionMessage"]["cb"] = len(msg)
        resp["pctbDispositionMessage"]["pb"] = msg
        resp["ErrorCode"] = 0
        return resp.getData()

    accounts = AccountStore([Account("enroller", "LAB", ntlm.compute_nthash(PASSWORD), "S-1-5-21-7-7-7-1105",
                                     [], upn="enroller@lab.adcs.test")])
    icpr = RpcServer(ADDRESS, 0, [Interface(ICPR, (0, 0), {0: cert_server_request},
                                            min_authn_level=C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)], accounts).start()
    mapper = EndpointMapper()
    mapper.register(ICPR, (0, 0), port=icpr.port)
    epm = RpcServer(ADDRESS, 135, [mapper.interface()], accounts).start()
    try:
        proc = subprocess.run(
            [CERTIPY, "req", "-u", "enroller@lab.adcs.test", "-p", PASSWORD, "-target-ip", ADDRESS, "-ca", "LAB-CA",
             "-template", "User", "-dynamic-endpoint", "-timeout", "5"],
            input="n\n", capture_output=True, text=True, timeout=120, cwd=os.path.dirname(__file__))
    finally:
        icpr.stop()
        epm.stop()
    out = proc.stdout + proc.stderr
    assert "Request ID is 17" in out, out
    assert "0x80094012" in out and "CERTSRV_E_TEMPLATE_DENIED" in out, out
    assert seen["user"].lower() == "enroller" and seen["sid"] == "S-1-5-21-7-7-7-1105"
    assert seen["level"] == C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    assert seen["authority"].rstrip("\0") == "LAB-CA"
    assert seen["attrs"].rstrip("\0") == "CertificateTemplate:User"
    assert seen["csr"][:1] == b"\x30"        # a DER PKCS#10 reached the handler intact
