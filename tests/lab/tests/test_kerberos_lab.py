"""Kerberos end to end against the lab KDC (Samba/Heimdal on 127.0.0.11) and our own lab CA instances.

The CA instances (127.0.0.82 with NTLM, 127.0.0.83 with ADCS_LAB_DISABLE_NTLM=1) run from a copy of the lab
state with the CA's keytab (seed.CA_ACCOUNT); the client is the collection's core (_kerberos + _dcom + _wcce). The CA is
reached by address while tickets are for HOST/<seed.CA_HOST>: ``DcomSession(<dns name>, auth,
remote_host=<address>)``.
"""

import datetime
import os
import shutil
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from adcslab import seed

LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("ADCS_LAB_STATE") or os.path.join(LAB_DIR, "state")
CA_DNS = seed.CA_HOST
# impacket picks the object exporter's string binding by finding the target's host label in the announced NetBIOS
# name (impacket #602): a truncated NetBIOS name (pki-issuing-ca01 -> PKI-ISSUING-CA0) matches none, as with a
# Windows CA of a long name; Certipy 5.1 and the collection's client take the port only and are not affected
IMPACKET_FINDS_BINDING = seed.CA_HOST_SHORT.upper() in seed.CA_NETBIOS
DC = "127.0.0.11"

pytestmark = pytest.mark.lab

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr, _dcom, _kerberos, _keys, _wcce  # noqa
from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _errors  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache  # noqa: E402


class CaProcess:
    def __init__(self, state_dir, address, env=None):
        self.state_dir, self.address, self.env = state_dir, address, env or {}
        self.proc = None

    def start(self, timeout=60):
        import socket
        deadline = time.time() + 20
        while time.time() < deadline:          # a previous instance may still be closing port 135
            probe = socket.socket()
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.address, 135))
                break
            except OSError:
                time.sleep(0.5)
            finally:
                probe.close()
        env = dict(os.environ, PYTHONPATH=LAB_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env)
        env.pop("ADCS_LAB_KERBEROS_KEYTAB", None)   # the copy next to accounts.json is the one to use
        out = open(os.path.join(self.state_dir, "labca.stdout"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "adcslab.wcce.server", "--state-dir", self.state_dir,
                                      "--address", self.address, "--log-level", "DEBUG"], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        path = os.path.join(self.state_dir, "ca-endpoints.json")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lab CA exited: %s" % self.log())
            if os.path.exists(path):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("lab CA did not start: %s" % self.log())

    def log(self):
        try:
            with open(os.path.join(self.state_dir, "labca.log"), encoding="utf-8") as fh:
                return fh.read()[-5000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _state_copy(dst):
    for name in ("accounts.json", "lab.json", seed.CA_KEYTAB):
        src = os.path.join(STATE, name)
        if not os.path.exists(src):
            pytest.skip("the lab has no %s" % name)
        shutil.copy(src, os.path.join(dst, name))
    shutil.copytree(os.path.join(STATE, "pki"), os.path.join(dst, "pki"))
    return dst


@pytest.fixture(scope="module")
def ca(lab, tmp_path_factory):
    proc = CaProcess(_state_copy(str(tmp_path_factory.mktemp("kca"))), "127.0.0.82").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def ca_no_ntlm(lab, tmp_path_factory):
    proc = CaProcess(_state_copy(str(tmp_path_factory.mktemp("kca_nontlm"))), "127.0.0.83",
                     env={"ADCS_LAB_DISABLE_NTLM": "1"}).start()
    yield proc
    proc.stop()


def account(lab, key):
    return lab["accounts"][key]


def enroll(ca, auth, template, subject=None):
    key = _keys.generate_private_key("rsa", 2048)
    csr = _csr.build_csr(key, subject)
    with _dcom.DcomSession(CA_DNS, auth, remote_host=ca.address, timeout=30) as session:
        result = _wcce.CertRequestClient(session, "LAB-CA").request(template, csr)
    return result


def _cert(result):
    assert result.issued, (result.hresult, result.message)
    return x509.load_der_x509_certificate(result.certificate_der)


# ------------------------------------------------------------------------------------------------------
def test_machine_keytab_enrolls_for_machine_template(lab, ca):
    comp = account(lab, "computer")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, user=comp["username"], keytab=comp["keytab"], dns_server=DC)
    cert = _cert(enroll(ca, auth, "Machine"))
    assert auth.credentials.source == "keytab" and auth.service_principal == "HOST/" + CA_DNS
    assert auth.credentials.kdc == (DC, 88)          # found by SRV _kerberos._tcp.lab.adcs.test via the lab DNS
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn.lower() == comp["dns_host_name"].lower()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert comp["dns_host_name"].lower() in [n.lower() for n in sans.get_values_for_type(x509.DNSName)]
    assert "LABHOST01$@LAB.ADCS.TEST authenticated" in ca.log()


def test_user_password(lab, ca):
    user = account(lab, "enroller")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user=user["username"], password=user["password"],
                                        kdc=DC)
    _cert(enroll(ca, auth, "User"))
    assert "enroller@LAB.ADCS.TEST authenticated" in ca.log()


def test_user_ccache_from_kinit(lab, ca, tmp_path):
    if not shutil.which("kinit"):
        pytest.skip("no kinit")
    user = account(lab, "enroller")
    cc = str(tmp_path / "krb5cc")
    env = dict(os.environ, KRB5_CONFIG=lab["dc"]["krb5_conf"])
    subprocess.run(["kinit", "-c", "FILE:" + cc, "%s@%s" % (user["username"], lab["realm"])],
                   input=user["password"] + "\n", env=env, check=True, capture_output=True, text=True, timeout=30)
    auth = _kerberos.KerberosTicketAuth(CA_DNS, ccache=cc, dns_server=DC)
    _cert(enroll(ca, auth, "User"))
    assert auth.credentials.source == "ccache" and auth.credentials.user == "enroller"


def test_ntlm_disabled_kerberos_still_works(lab, ca_no_ntlm):
    comp = account(lab, "computer")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, user=comp["username"], keytab=comp["keytab"], dns_server=DC)
    _cert(enroll(ca_no_ntlm, auth, "Machine"))
    user = account(lab, "enroller")
    # Negotiate (the default) offers NTLM only (no ticket without Kerberos options): SPNEGO finds no mechanism;
    # raw NTLM (auth type 10) is refused as such
    for package, logged in (("negotiate", "SPNEGO: none of the offered mechanisms is supported here"),
                            ("ntlm", "authentication type 10 not supported")):
        auth = _auth.PasswordAuth(user["username"], "LAB", user["password"])
        auth.rpc_package = package
        with pytest.raises(_errors.WcceError) as info:
            enroll(ca_no_ntlm, auth, "User")
        assert "refused" in str(info.value) or "failed" in str(info.value)
        assert logged in ca_no_ntlm.log()


def test_impacket_dcomconnection_with_kerberos(lab, ca):
    """impacket's own DCOM client (activation + a sealed IRemUnknown call) with our service ticket."""
    from impacket.dcerpc.v5.dcomrt import DCOMConnection
    from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    import wcce_helpers as H
    user = account(lab, "groupmember")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user=user["username"], password=user["password"],
                                        kdc=DC)
    kw = auth.transport_kwargs()
    dcom = DCOMConnection(CA_DNS, remoteHost=ca.address, authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY, oxidResolver=False,
                          **kw)
    try:
        clsid = bytes.fromhex("746e9ed988fcd011b49800a0c90312f3")
        iid = bytes.fromhex("706e9ed988fcd011b49800a0c90312f3")
        iface = dcom.CoCreateInstanceEx(clsid, iid)
        if IMPACKET_FINDS_BINDING:
            iface.RemRelease()
        else:
            with pytest.raises(Exception, match="Can't find a valid stringBinding to connect"):
                iface.RemRelease()
    finally:
        H.disconnect_dcom(dcom)
    assert "groupmember@LAB.ADCS.TEST authenticated" in ca.log()


# ------------------------------------------------------------------------------------------------------
# clear messages for each Kerberos failure
# ------------------------------------------------------------------------------------------------------
def test_no_kdc(lab, ca):
    user = account(lab, "enroller")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user="enroller", password=user["password"],
                                        kdc="127.0.0.89", timeout=5)
    with pytest.raises(_kerberos.KerberosFailure) as info:
        enroll(ca, auth, "User")
    assert "cannot reach the KDC" in str(info.value) and "127.0.0.89:88" in str(info.value)
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm="NOWHERE.TEST", user="enroller", password="x",
                                        dns_server=DC, timeout=5)
    with pytest.raises(_kerberos.KerberosFailure) as info:
        auth.acquire()
    assert "No KDC found for realm NOWHERE.TEST" in str(info.value)


def test_wrong_password(lab, ca):
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user="enroller", password="not-the-password",
                                        kdc=DC)
    with pytest.raises(_kerberos.KerberosFailure) as info:
        enroll(ca, auth, "User")
    assert "wrong password" in str(info.value) and "KDC_ERR_PREAUTH_FAILED" in str(info.value)


def test_no_service_principal(lab, ca):
    user = account(lab, "enroller")
    auth = _kerberos.KerberosTicketAuth("ca9.lab.adcs.test", realm=lab["realm"], user="enroller",
                                        password=user["password"], kdc=DC)
    with pytest.raises(_kerberos.KerberosFailure) as info:
        auth.acquire()
    text = str(info.value)
    assert "does not know the service principal" in text and "HOST/ca9.lab.adcs.test" in text
    with pytest.raises(_errors.InvalidInput) as info:
        _kerberos.KerberosTicketAuth(ca.address, realm=lab["realm"], user="enroller",
                                     password=user["password"], kdc=DC).acquire()
    assert "DNS name" in str(info.value)


_REAL_DATETIME = datetime.datetime


class _Shifted(datetime.datetime):
    """datetime whose now() is 20 minutes ahead (the client's clock is off)."""

    @classmethod
    def now(cls, tz=None):
        return _REAL_DATETIME.now(tz) + datetime.timedelta(minutes=20)


def _shift_impacket_clock(monkeypatch):
    import types

    from impacket.krb5 import kerberosv5
    fake = types.SimpleNamespace(datetime=_Shifted, timezone=datetime.timezone, timedelta=datetime.timedelta)
    monkeypatch.setattr(kerberosv5, "datetime", fake)


def test_clock_skew_at_the_kdc(lab, monkeypatch):
    _shift_impacket_clock(monkeypatch)
    user = account(lab, "enroller")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user="enroller", password=user["password"],
                                        kdc=DC)
    with pytest.raises(_kerberos.KerberosFailure) as info:
        auth.acquire()
    assert "clock skew" in str(info.value) and "KRB_AP_ERR_SKEW" in str(info.value)


def test_clock_skew_at_the_ca(lab, ca, monkeypatch):
    """Tickets fine, but the AP-REQ authenticator is 20 minutes off: the CA answers KRB_AP_ERR_SKEW."""
    user = account(lab, "enroller")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user="enroller", password=user["password"],
                                        kdc=DC).acquire()
    _shift_impacket_clock(monkeypatch)
    with pytest.raises(_errors.WcceError) as info:
        enroll(ca, auth, "User")
    text = str(info.value)
    assert "KRB_AP_ERR_SKEW" in text and "clock skew" in text and CA_DNS in text and "NTP" in text
    assert isinstance(info.value, _errors.AuthenticationError)
    assert "KRB_AP_ERR_SKEW" in ca.log()


def test_core_kerberos_auth_method_with_keytab(lab, ca):
    """The path the modules take: _auth.KerberosAuth (auth=kerberos) + DcomSession, which names the CA."""
    comp = account(lab, "computer")
    auth = _auth.KerberosAuth(comp["username"], lab["realm"], keytab=comp["keytab"], dns_server=DC)
    _cert(enroll(ca, auth, "Machine"))
    assert auth.ca_host == CA_DNS
    user = account(lab, "enroller")
    auth = _auth.KerberosAuth("enroller", lab["realm"], password=user["password"], kdc_host=DC)
    _cert(enroll(ca, auth, "User"))


def test_mit_gssapi_dce_style_with_header_signing(lab, tmp_path, monkeypatch):
    """An independent GSS implementation (MIT krb5 through python-gssapi) against the acceptor: raw type-16 tokens
    in DCE style (3 legs), then wrap_iov/unwrap_iov both ways with and without SIGN_ONLY header/trailer buffers
    (PFC_SUPPORT_HEADER_SIGN), as Windows/Samba clients seal DCE/RPC PDUs."""
    gssapi = pytest.importorskip("gssapi")
    from gssapi.raw import IOV, IOVBufferType, unwrap_iov, wrap_iov

    from adcslab.rpc import AccountStore, ServerIdentity
    from adcslab.rpc.kerberos import KerberosProvider
    if not shutil.which("kinit"):
        pytest.skip("no kinit")
    monkeypatch.setenv("KRB5_CONFIG", lab["dc"]["krb5_conf"])
    user = account(lab, "enroller")
    cc = "FILE:" + str(tmp_path / "krb5cc")
    subprocess.run(["kinit", "-c", cc, "%s@%s" % (user["username"], lab["realm"])], input=user["password"] + "\n",
                   env=dict(os.environ), check=True, capture_output=True, text=True, timeout=30)
    accounts = AccountStore.from_file(os.path.join(STATE, "accounts.json"))
    prov = KerberosProvider(ServerIdentity("LAB", "lab.adcs.test", seed.CA_NETBIOS, CA_DNS, accounts),
                            keytab=os.path.join(STATE, seed.CA_KEYTAB))
    flags = gssapi.RequirementFlag
    ctx = gssapi.SecurityContext(
        name=gssapi.Name("host@" + CA_DNS, gssapi.NameType.hostbased_service),
        creds=gssapi.Credentials(usage="initiate", store={"ccache": cc}),
        mech=gssapi.OID.from_int_seq("1.2.840.113554.1.2.2"), usage="initiate",
        flags=[flags.mutual_authentication, flags.dce_style, flags.confidentiality, flags.integrity,
               flags.replay_detection, flags.out_of_sequence_detection])

    class Conn:
        header_signing = True
    acceptor = prov.new_context()
    acceptor.connection = Conn()
    reply = acceptor.accept(ctx.step())
    assert not reply.done and reply.reply_token[0] == 0x6F          # raw AP-REP
    leg3 = ctx.step(reply.reply_token)
    assert ctx.complete and acceptor.accept(leg3).done and acceptor.user == "enroller"

    prefix, suffix = b"H" * 24, b"T" * 8
    for signing in (True, False):
        Conn.header_signing = signing
        for n in (16, 48, 20):
            stub = os.urandom(n)
            signed = [(IOVBufferType.sign_only, False, prefix)] if signing else []
            after = [(IOVBufferType.sign_only, False, suffix)] if signing else []
            iov = IOV((IOVBufferType.header, True), *signed, (IOVBufferType.data, False, stub), *after,
                      std_layout=False)
            wrap_iov(ctx, iov, confidential=True)
            assert acceptor.unseal(prefix, iov[len(signed) + 1].value, suffix, iov[0].value) == stub
            padded = stub + b"\0" * ((16 - n % 16) % 16)
            body, verifier = acceptor.seal(prefix, padded, suffix)
            iov = IOV((IOVBufferType.header, False, verifier), *signed, (IOVBufferType.data, False, body), *after,
                      std_layout=False)
            unwrap_iov(ctx, iov)
            assert iov[len(signed) + 1].value == padded
    # the client signed the header but the acceptor was told it would not: refused
    Conn.header_signing = False
    iov = IOV((IOVBufferType.header, True), (IOVBufferType.sign_only, False, prefix), (IOVBufferType.data, False,
              b"x" * 32), (IOVBufferType.sign_only, False, suffix), std_layout=False)
    wrap_iov(ctx, iov, confidential=True)
    from adcslab.rpc.security import IntegrityError
    with pytest.raises(IntegrityError):
        acceptor.unseal(prefix, iov[2].value, suffix, iov[0].value)


def test_pac_identity_from_a_real_ticket(lab):
    """Samba's PAC in a real service ticket: user and group SIDs; a caller missing from the store gets its
    identity from the PAC (the CA policy then looks it up by SID)."""
    from impacket.krb5 import kerberosv5

    from adcslab.rpc import AccountStore, ServerIdentity
    from adcslab.rpc.kerberos import SpnegoProvider
    member = account(lab, "groupmember")
    auth = _kerberos.KerberosTicketAuth(CA_DNS, realm=lab["realm"], user=member["username"],
                                        password=member["password"], kdc=DC).acquire()
    for store in (AccountStore.from_file(os.path.join(STATE, "accounts.json")), AccountStore()):
        prov = SpnegoProvider(ServerIdentity("LAB", "lab.adcs.test", seed.CA_NETBIOS, CA_DNS, store),
                              keytab=os.path.join(STATE, seed.CA_KEYTAB))
        _cipher, _session, token = kerberosv5.getKerberosType1(member["username"], "", lab["realm"], "", "", "", None,
                                                               auth.service_ticket, CA_DNS, None, useCache=False)
        ctx = prov.new_context()
        assert not ctx.accept(token).done and not ctx.failed
        assert ctx.inner.pac_sid == member["sid"]
        assert set(member["group_sids"]) - {"S-1-5-32-545"} <= set(ctx.inner.pac_group_sids)
        assert ctx.account.sid == member["sid"]
        if not len(store):
            assert ctx.account.sam == member["username"] and set(ctx.account.group_sids) >= {
                s for s in member["group_sids"] if s.startswith("S-1-5-21-")}


@pytest.mark.parametrize("who", ["enroller", "computer"])
def test_ldap_sasl_gssapi_with_the_same_credentials(lab, tmp_path, monkeypatch, who):
    """LDAP (the _ldap core, SASL GSSAPI through python-gssapi) with credentials from _kerberos: a password or
    the machine keytab, KDC by SRV through the lab DNS; written to a ccache with the ldap/ service ticket, so MIT
    krb5 needs no krb5.conf for the lab realm."""
    pytest.importorskip("gssapi")
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
    monkeypatch.delenv("KRB5_CONFIG", raising=False)
    acct = account(lab, who)
    if who == "computer":
        creds = _kerberos.acquire_credentials(None, acct["username"], keytab=acct["keytab"], dns_server=DC)
    else:
        creds = _kerberos.acquire_credentials(lab["realm"], acct["username"], acct["password"], dns_server=DC)
    cc = _ccache.write_ccache(creds, str(tmp_path / "cc"), spns=["ldap/%s" % lab["dc"]["hostname"]])
    settings = _ldap.LdapSettings(domain=lab["domain"], domain_controller=DC, ca_bundle=lab["ca_bundle"],
                                  auth="kerberos", kerberos_ccache=cc)
    conn = _ldap.AdConnection(settings)
    conn.connect()
    try:
        found = list(conn.search(lab["base_dn"], "(sAMAccountName=%s)" % acct["username"], ["objectSid"]) or [])
    finally:
        conn.close()
    assert len(found) == 1


CERTIPY = os.path.join(os.path.dirname(os.path.dirname(LAB_DIR)), ".venv-certipy", "bin", "certipy")


@pytest.mark.parametrize("method", ["-dcom", "-dynamic-endpoint"])
def test_certipy_kerberos(lab, ca, tmp_path, method):
    """Certipy 5.1 with -k (its own Kerberos, type 9) over DCOM and MS-ICPR. Its TGS exchange lacks the
    authenticator checksum Heimdal wants, so the ccache we hand it already holds the CA's service ticket
    (_ccache.write_ccache: what a user's kinit + kvno would produce)."""
    if not os.path.exists(CERTIPY):
        pytest.skip("no .venv-certipy")
    user = account(lab, "enroller")
    creds = _kerberos.acquire_credentials(lab["realm"], user["username"], user["password"], kdc=DC)
    cc = _ccache.write_ccache(creds, str(tmp_path / "cc"), spns=["HOST/" + CA_DNS])
    env = dict(os.environ, KRB5CCNAME=cc[5:])
    proc = subprocess.run([CERTIPY, "req", "-u", "%s@%s" % (user["username"], lab["domain"]), "-k", "-no-pass",
                           "-target", CA_DNS, "-target-ip", ca.address, "-dc-ip", DC, "-ca", "LAB-CA",
                           "-template", "User", method, "-out", str(tmp_path / "out")],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert "Successfully requested certificate" in out, out
    assert "Got certificate with UPN 'enroller@lab.adcs.test'" in out
