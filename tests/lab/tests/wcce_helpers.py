"""Test helpers for the lab CA wire tests: client-side NDR call classes (built on impacket's NDR), a fake CA
backend for handler tests, account files and a server launcher."""

import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

from impacket.dcerpc.v5.dcomrt import DCOMANSWER, DCOMCALL
from impacket.dcerpc.v5.dtypes import DWORD, LONG, LPWSTR, NULL, PBYTE, ULONG
from impacket.dcerpc.v5.ndr import NDRCALL, NDRSTRUCT
from impacket.dcerpc.v5.rpcrt import DCERPCException

from adcslab import seed

LAB_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REPO_ROOT = os.path.abspath(os.path.join(LAB_DIR, "..", ".."))
CERTIPY = os.path.join(REPO_ROOT, ".venv-certipy", "bin", "certipy")
if LAB_DIR not in sys.path:
    sys.path.insert(0, LAB_DIR)


# ---- client-side MS-WCCE / MS-ICPR structures ------------------------------------------------------
class CERTTRANSBLOB(NDRSTRUCT):
    structure = (("cb", ULONG), ("pb", PBYTE))


def blob(data):
    b = CERTTRANSBLOB()
    b["cb"] = len(data)
    b["pb"] = data if data else NULL
    return b


def blob_bytes(b):
    if b["pb"] in (None, NULL) or b["cb"] == 0:
        return b""
    return b"".join(b["pb"]) if isinstance(b["pb"], list) else bytes(b["pb"])


class Request(DCOMCALL):
    opnum = 3
    structure = (("dwFlags", DWORD), ("pwszAuthority", LPWSTR), ("pdwRequestId", DWORD),
                 ("pwszAttributes", LPWSTR), ("pctbRequest", CERTTRANSBLOB))


class RequestResponse(DCOMANSWER):
    structure = (("pdwRequestId", DWORD), ("pdwDisposition", ULONG), ("pctbCertChain", CERTTRANSBLOB),
                 ("pctbEncodedCert", CERTTRANSBLOB), ("pctbDispositionMessage", CERTTRANSBLOB),
                 ("ErrorCode", ULONG))


class RequestCertipyRetrieve(DCOMCALL):
    """What Certipy 5.1 sends for a DCOM retrieve: a CERTTRANSBLOB where the attributes string belongs."""
    opnum = 3
    structure = (("dwFlags", DWORD), ("pwszAuthority", LPWSTR), ("pdwRequestId", DWORD),
                 ("pwszAttributes", CERTTRANSBLOB), ("pctbRequest", CERTTRANSBLOB))


class RequestCertipyRetrieveResponse(RequestResponse):
    pass


class GetCACert(DCOMCALL):
    opnum = 4
    structure = (("fchain", DWORD), ("pwszAuthority", LPWSTR))


class GetCACertResponse(DCOMANSWER):
    structure = (("pctbOut", CERTTRANSBLOB), ("ErrorCode", ULONG))


class Ping(DCOMCALL):
    opnum = 5
    structure = (("pwszAuthority", LPWSTR),)


class PingResponse(DCOMANSWER):
    structure = (("ErrorCode", ULONG),)


class Request2(DCOMCALL):
    opnum = 6
    structure = (("pwszAuthority", LPWSTR), ("dwFlags", DWORD), ("pwszSerialNumber", LPWSTR),
                 ("pdwRequestId", DWORD), ("pwszAttributes", LPWSTR), ("pctbRequest", CERTTRANSBLOB))


class Request2Response(DCOMANSWER):
    structure = (("pdwRequestId", DWORD), ("pdwDisposition", ULONG), ("pctbFullResponse", CERTTRANSBLOB),
                 ("pctbEncodedCert", CERTTRANSBLOB), ("pctbDispositionMessage", CERTTRANSBLOB),
                 ("ErrorCode", ULONG))


class GetCAProperty(DCOMCALL):
    opnum = 7
    structure = (("pwszAuthority", LPWSTR), ("PropID", LONG), ("PropIndex", LONG), ("PropType", LONG))


class GetCAPropertyResponse(DCOMANSWER):
    structure = (("pctbPropertyValue", CERTTRANSBLOB), ("ErrorCode", ULONG))


class GetCAPropertyInfo(DCOMCALL):
    opnum = 8
    structure = (("pwszAuthority", LPWSTR),)


class GetCAPropertyInfoResponse(DCOMANSWER):
    structure = (("pcProperty", LONG), ("pctbPropInfo", CERTTRANSBLOB), ("ErrorCode", ULONG))


class CertServerRequest(NDRCALL):
    opnum = 0
    structure = (("dwFlags", DWORD), ("pwszAuthority", LPWSTR), ("pdwRequestId", DWORD),
                 ("pctbAttribs", CERTTRANSBLOB), ("pctbRequest", CERTTRANSBLOB))


class CertServerRequestResponse(NDRCALL):
    structure = (("pdwRequestId", DWORD), ("pdwDisposition", ULONG), ("pctbCert", CERTTRANSBLOB),
                 ("pctbEncodedCert", CERTTRANSBLOB), ("pctbDispositionMessage", CERTTRANSBLOB),
                 ("ErrorCode", ULONG))


class DCERPCSessionError(DCERPCException):
    """What impacket raises (from the request's module) when a call returns a nonzero HRESULT."""

    def __init__(self, error_string=None, error_code=None, packet=None):
        DCERPCException.__init__(self, error_string, error_code, packet)

    def __str__(self):
        return "DCERPCSessionError: 0x%08x" % (self.error_code or 0)


def wstr(text):
    return text + "\x00"


# ---- fake backend ------------------------------------------------------------------------------------
class FakeCAError(Exception):
    def __init__(self, hresult, message):
        super().__init__(message)
        self.hresult = hresult
        self.message = message


class FakeCA:
    """Records calls; issues a fixed blob for any request, pends when attributes ask for it."""
    name = "LAB-CA"
    dns_name = seed.CA_HOST

    def __init__(self):
        self.calls = []
        self.pending = {}

    def submit(self, flags, attributes, request, requester, serial_number=""):
        self.calls.append(("submit", flags, attributes, request, requester, serial_number))
        rid = len(self.calls)
        if "pend" in attributes:
            self.pending[rid] = request
            return SimpleNamespace(disposition=5, status_hresult=0, request_id=rid, cert_der=None,
                                   chain_pkcs7=None, full_response=None, disposition_message="Taken Under Submission")
        if "deny" in attributes:
            return SimpleNamespace(disposition=0x80094012, status_hresult=0x80094012, request_id=rid, cert_der=None,
                                   chain_pkcs7=None, full_response=None, disposition_message="Denied by Policy Module")
        return SimpleNamespace(disposition=3, status_hresult=0, request_id=rid, cert_der=b"CERT:" + request,
                               chain_pkcs7=b"P7:" + request, full_response=b"CMC:" + request,
                               disposition_message="Issued")

    def retrieve(self, request_id, requester, flags=0):
        self.calls.append(("retrieve", request_id, requester, flags))
        if request_id not in self.pending:
            raise FakeCAError(0x80094002, "No such request")
        return SimpleNamespace(disposition=3, status_hresult=0, request_id=request_id, cert_der=b"RETRIEVED",
                               chain_pkcs7=b"P7R", full_response=None, disposition_message="Issued")

    def get_ca_cert(self, fchain):
        if fchain == 0:
            return b"CACERT"
        raise FakeCAError(0x80070057, "bad fchain")

    def get_property(self, prop_id, prop_index, prop_type):
        if prop_id == 6:
            return 4, "LAB-CA"
        if prop_id == 0xA:
            return 1, 0
        if prop_id == 0xC:
            return 3, b"\x30\x82SIGNCERT"
        raise FakeCAError(0x80070057, "unknown property")

    def property_info(self):
        return [(6, 4, 0, "CA Name"), (0xC, 3, 1, "CA Signature Certificate")]


# ---- accounts and server process ---------------------------------------------------------------------
def write_accounts(state_dir, users):
    """users: {sam: password}. Writes accounts.json like the lab seeding does."""
    from impacket import ntlm

    accounts = []
    for i, (sam, password) in enumerate(sorted(users.items())):
        accounts.append({
            "sam": sam, "domain": "LAB", "upn": "%s@lab.adcs.test" % sam, "password": password,
            "nt_hash": ntlm.compute_nthash(password).hex(),
            "sid": "S-1-5-21-1000-2000-3000-%d" % (1100 + i),
            "group_sids": ["S-1-5-21-1000-2000-3000-513", "S-1-5-11"], "kind": "user",
        })
    path = os.path.join(state_dir, "accounts.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(accounts, fh, indent=2)
    return path


def address_free(address, port=135):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class ServerProcess:
    def __init__(self, state_dir, address, port=135):
        self.state_dir = state_dir
        self.address = address
        self.port = port
        self.proc = None
        self.endpoints = None

    def start(self, timeout=60):
        env = dict(os.environ, PYTHONPATH=LAB_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.output_path = os.path.join(self.state_dir, "labca.stdout")
        with open(self.output_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "adcslab.wcce.server", "--state-dir", self.state_dir,
                                          "--address", self.address, "--port", str(self.port), "--log-level",
                                          "DEBUG"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        path = os.path.join(self.state_dir, "ca-endpoints.json")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lab CA exited %s: %s\n%s" % (self.proc.returncode, self.output(), self.log()))
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    self.endpoints = json.load(fh)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("lab CA did not write ca-endpoints.json in %ss\n%s" % (timeout, self.log()))

    def output(self):
        try:
            with open(self.output_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def log(self):
        try:
            with open(os.path.join(self.state_dir, "labca.log"), encoding="utf-8") as fh:
                return fh.read()[-6000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None


# ---- the shared lab's accounts and PKI in a private state dir (fault / lab-account tests) --------------
LAB_STATE = os.environ.get("ADCS_LAB_STATE") or os.path.join(LAB_DIR, "state")


def lab_account(sam):
    with open(os.path.join(LAB_STATE, "accounts.json"), encoding="utf-8") as fh:
        for item in json.load(fh):
            if item["sam"].lower() == sam.lower():
                return item
    raise KeyError(sam)


def copy_lab_state(dst):
    """A state dir with a copy of the lab's accounts.json and pki/ (no lab.json: built-in templates). Returns
    None when the lab has not been set up (no accounts.json / pki)."""
    import shutil

    accounts = os.path.join(LAB_STATE, "accounts.json")
    pki = os.path.join(LAB_STATE, "pki")
    if not (os.path.exists(accounts) and os.path.isdir(pki)):
        return None
    os.makedirs(dst, exist_ok=True)
    shutil.copy(accounts, os.path.join(dst, "accounts.json"))
    shutil.copytree(pki, os.path.join(dst, "pki"), dirs_exist_ok=True)
    return dst


def ca_cli(state_dir, *args):
    """``python -m adcslab.ca --state-dir STATE ARGS`` -> CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=LAB_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "adcslab.ca", "--state-dir", state_dir] + list(args), env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def faults_cli(state_dir, *args):
    """``python -m adcslab.faults --state-dir STATE ARGS`` -> CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=LAB_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "adcslab.faults", "--state-dir", state_dir] + list(args), env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def make_csr(cn="enroller", key_size=2048):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.DER)


def openssl_verify(state_dir, cert_der, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from adcslab.pki import ensure_pki

    pki = ensure_pki(state_dir)
    cert_path = os.path.join(str(tmp_path), "leaf-%d.pem" % time.monotonic_ns())
    with open(cert_path, "wb") as fh:
        fh.write(x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM))
    return subprocess.run(["openssl", "verify", "-CAfile", pki.root_cert_path, "-untrusted", pki.ca_cert_path,
                           cert_path], capture_output=True, text=True)


def dcom_cert_iface(conn, iid):
    """Activate CCertRequestD on a DCOMConnection and return an object whose ``call(req, check=True)`` sends an
    MS-WCCE call to the IPID of ``iid`` (impacket uuidtup_to_bin form)."""
    from impacket.dcerpc.v5 import dcomrt
    from impacket.uuid import string_to_bin

    class CertIface(dcomrt.IRemUnknown2):
        def __init__(self, interface, cert_iid):
            dcomrt.IRemUnknown2.__init__(self, interface)
            self._cert_iid = cert_iid

        def call(self, req, check=True):
            req["ORPCthis"] = self.get_cinstance().get_ORPCthis()
            req["ORPCthis"]["flags"] = 0
            self.connect(self._cert_iid)
            return self.get_dce_rpc().request(req, self.get_iPid(), checkError=check)

    clsid = string_to_bin("d99e6e74-fc88-11d0-b498-00a0c90312f3")
    return CertIface(conn.CoCreateInstanceEx(clsid, iid), iid)


def icpr_connect(address, icpr_port, user, password, domain="LAB"):
    """An impacket DCERPC connection to ICertPassage at packet privacy."""
    from impacket.dcerpc.v5 import transport
    from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    from impacket.uuid import uuidtup_to_bin

    rpctransport = transport.DCERPCTransportFactory("ncacn_ip_tcp:%s[%d]" % (address, icpr_port))
    rpctransport.set_credentials(user, password, domain)
    rpctransport.set_connect_timeout(10)
    dce = rpctransport.get_dce_rpc()
    dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    dce.connect()
    dce.bind(uuidtup_to_bin(("91ae6020-9e3c-11cf-8d7c-00aa00c091be", "0.0")))
    return dce


def icpr_request(dce, csr_der=b"", attributes="CertificateTemplate:User", request_id=0, flags=0,
                 authority="LAB-CA", check=False):
    req = CertServerRequest()
    req["dwFlags"] = flags
    req["pwszAuthority"] = wstr(authority)
    req["pdwRequestId"] = request_id
    attrib = (attributes + "\x00").encode("utf-16-le") if attributes else b""
    req["pctbAttribs"] = blob(attrib)
    req["pctbRequest"] = blob(csr_der)
    return dce.request(req, checkError=check)


def wcce_request(iface, csr_der, attributes="CertificateTemplate:User", request_id=0, flags=0, check=False,
                 authority="LAB-CA"):
    req = Request()
    req["dwFlags"] = flags
    req["pwszAuthority"] = wstr(authority)
    req["pdwRequestId"] = request_id
    req["pwszAttributes"] = wstr(attributes) if attributes is not None else NULL
    req["pctbRequest"] = blob(csr_der)
    return iface.call(req, check=check)


def text_of(b):
    return blob_bytes(b).decode("utf-16-le").rstrip("\x00")


def disconnect_dcom(dcom):
    """impacket's DCOMConnection.disconnect, which raises KeyError after an exporter connection that never opened
    (no entry in its connection table): that case is not an error of the lab."""
    try:
        dcom.disconnect()
    except KeyError:
        pass
