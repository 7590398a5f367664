"""Kerberos (16) / SPNEGO (9) acceptors of the lab RPC engine, without a KDC.

Tickets are minted here with a random service key (what the KDC would do with the CA account's key), the client side is
impacket's own Kerberos/GSS code (getKerberosType1/Type3, GSSAPI_AES*), and a TCP round trip goes through
impacket's DCE/RPC client at packet privacy.
"""

import datetime
import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from impacket.dcerpc.v5 import transport  # noqa: E402
from impacket.dcerpc.v5.rpcrt import (RPC_C_AUTHN_GSS_NEGOTIATE, RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,  # noqa: E402
                                      RPC_C_AUTHN_LEVEL_PKT_PRIVACY, RPC_C_AUTHN_WINNT, SEC_TRAILER,
                                      DCERPCException)
from impacket.krb5 import constants as KC  # noqa: E402
from impacket.krb5 import crypto as kcrypto  # noqa: E402
from impacket.krb5 import gssapi, kerberosv5  # noqa: E402
from impacket.krb5.asn1 import TGS_REP, EncTicketPart, Ticket as TicketAsn1, seq_set  # noqa: E402
from impacket.krb5.types import KerberosTime, Principal  # noqa: E402
from impacket.uuid import uuidtup_to_bin  # noqa: E402
from pyasn1.codec.der import encoder  # noqa: E402
from pyasn1.type.univ import noValue  # noqa: E402

from adcslab import seed  # noqa: E402
from adcslab.rpc import AccountStore, Interface, RpcFault, RpcServer, ServerIdentity  # noqa: E402
from adcslab.rpc import constants as C  # noqa: E402
from adcslab.rpc.accounts import Account  # noqa: E402
from adcslab.rpc.kerberos import (KRB_AP_ERR_BADMATCH, KRB_AP_ERR_MODIFIED, KRB_AP_ERR_NOT_US,  # noqa: E402
                                  KRB_AP_ERR_REPEAT, KRB_AP_ERR_SKEW, KRB_AP_ERR_TKT_EXPIRED,
                                  KRB_AP_ERR_TKT_NYV, KerberosProvider, ServiceKeys, SpnegoProvider,
                                  aes_seal_iov, aes_unseal_iov, gss_unframe,
                                  keytab_path_for)
from adcslab.rpc.client import authenticate_with_mic  # noqa: E402
from adcslab.rpc.security import AuthError, IntegrityError, default_providers  # noqa: E402

REALM = "LAB.ADCS.TEST"
SERVICE_KEY = kcrypto.Key(18, bytes(range(32)))
OTHER_KEY = kcrypto.Key(18, bytes(range(1, 33)))
ADDRESS = "127.0.0.84"
IFACE = "12345678-1234-abcd-ef00-0123456789ab"


def identity(accounts=None):
    if accounts is None:
        accounts = AccountStore([
            Account("enroller", "LAB", b"\x00" * 16, sid="S-1-5-21-1-2-3-1103", upn="enroller@lab.adcs.test"),
            Account("LABHOST01$", "LAB", b"\x00" * 16, sid="S-1-5-21-1-2-3-1106", kind="computer"),
            Account("disabled", "LAB", b"\x00" * 16, sid="S-1-5-21-1-2-3-1107", enabled=False),
        ])
    accounts.add_domain_alias("lab.adcs.test", "LAB")
    return ServerIdentity("LAB", "lab.adcs.test", seed.CA_NETBIOS, seed.CA_HOST, accounts)


def provider(clock=None, cls=SpnegoProvider):
    keys = ServiceKeys({18: [(2, SERVICE_KEY.contents)]}, seed.CA_ACCOUNT, REALM)
    krb = KerberosProvider(identity(), keys=keys, clock=clock)
    return krb if cls is KerberosProvider else SpnegoProvider(krb.identity, kerberos=krb)


def mint(client="enroller", sname="HOST/" + seed.CA_HOST, key=SERVICE_KEY, start=None, end=None,
         realm=REALM, session_etype=18):
    """A service ticket as the KDC would issue it, as impacket's TGS dict."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start = start or now - datetime.timedelta(minutes=1)
    end = end or now + datetime.timedelta(hours=10)
    session = kcrypto.Key(session_etype, os.urandom(32 if session_etype == 18 else 16))
    part = EncTicketPart()
    part["flags"] = KC.encodeFlags([KC.TicketFlags.forwardable.value, KC.TicketFlags.pre_authent.value])
    part["key"] = noValue
    part["key"]["keytype"] = session.enctype
    part["key"]["keyvalue"] = session.contents
    part["crealm"] = realm
    seq_set(part, "cname", Principal(client, type=KC.PrincipalNameType.NT_PRINCIPAL.value).components_to_asn1)
    part["transited"] = noValue
    part["transited"]["tr-type"] = 0
    part["transited"]["contents"] = b""
    part["authtime"] = KerberosTime.to_asn1(start)
    part["starttime"] = KerberosTime.to_asn1(start)
    part["endtime"] = KerberosTime.to_asn1(end)
    enc = kcrypto._enctype_table[key.enctype].encrypt(key, 2, encoder.encode(part), None)
    rep = TGS_REP()
    rep["pvno"] = 5
    rep["msg-type"] = 13
    rep["crealm"] = realm
    seq_set(rep, "cname", Principal(client, type=KC.PrincipalNameType.NT_PRINCIPAL.value).components_to_asn1)
    rep["ticket"] = noValue
    rep["ticket"]["tkt-vno"] = 5
    rep["ticket"]["realm"] = realm
    seq_set(rep["ticket"], "sname", Principal(sname, type=KC.PrincipalNameType.NT_SRV_INST.value).components_to_asn1)
    rep["ticket"]["enc-part"] = noValue
    rep["ticket"]["enc-part"]["etype"] = key.enctype
    rep["ticket"]["enc-part"]["kvno"] = 2
    rep["ticket"]["enc-part"]["cipher"] = enc
    rep["enc-part"] = noValue
    rep["enc-part"]["etype"] = 18
    rep["enc-part"]["cipher"] = b"unused"
    return {"KDC_REP": encoder.encode(rep), "cipher": kcrypto._enctype_table[session.enctype](),
            "sessionKey": session}


def ap_req_token(tgs, user="enroller"):
    cipher, session, token = kerberosv5.getKerberosType1(user, "", REALM, "", "", "", None, tgs, "x", None,
                                                         useCache=False)
    return cipher, session, token


def handshake(prov, tgs=None, user="enroller"):
    tgs = tgs or mint(user)
    cipher, session, token = ap_req_token(tgs, user)
    ctx = prov.new_context()
    res = ctx.accept(token)
    assert not res.done and res.reply_token
    cipher2, session2, leg3 = kerberosv5.getKerberosType3(cipher, session, res.reply_token)
    res2 = ctx.accept(leg3)
    assert res2.done and ctx.complete
    assert ctx.user == getattr(ctx, "inner", ctx).user
    return getattr(ctx, "inner", ctx), cipher2, session2


def refused_code(prov, token):
    """The KRB-ERROR code the context answers with (GSS framed inside a SPNEGO reject)."""
    ctx = prov.new_context()
    res = ctx.accept(token)
    assert not res.done and ctx.failed and not ctx.complete
    with pytest.raises(kerberosv5.KerberosError) as info:
        kerberosv5.getKerberosType3(None, None, res.reply_token)
    return info.value.getErrorCode(), ctx


# ---------------------------------------------------------------------------------------------------------
def test_handshake_identity_and_session():
    ctx, cipher, session = handshake(provider())
    assert ctx.user == "enroller" and ctx.domain == REALM
    assert ctx.account.sid == "S-1-5-21-1-2-3-1103"
    assert cipher.enctype == 18 and session.contents == ctx.session_key


def test_machine_account_identity():
    ctx, _c, _s = handshake(provider(), user="LABHOST01$")
    assert ctx.account.sam == "LABHOST01$" and ctx.account.kind == "computer"


def test_raw_kerberos_type16_token():
    prov = provider(cls=KerberosProvider)
    cipher, session, token = ap_req_token(mint())
    # take the Kerberos mechToken out of impacket's SPNEGO NegTokenInit: a type-16 client sends just that
    from impacket.spnego import SPNEGO_NegTokenInit
    mech_token = SPNEGO_NegTokenInit(token)["MechToken"]
    oid, tok_id, inner = gss_unframe(mech_token)
    assert tok_id == b"\x01\x00"
    ctx = prov.new_context()
    res = ctx.accept(mech_token)
    assert not res.done and res.reply_token[0] == 0x6F        # raw AP-REP (DCE style)
    from impacket.spnego import SPNEGO_NegTokenResp
    wrapped = SPNEGO_NegTokenResp()
    wrapped["ResponseToken"] = res.reply_token
    _c2, _s2, leg3 = kerberosv5.getKerberosType3(cipher, session, wrapped.getData())
    leg3_raw = SPNEGO_NegTokenResp(leg3)["ResponseToken"]
    assert ctx.accept(leg3_raw).done and ctx.complete


@pytest.mark.parametrize("shift", [-400, 400])
def test_clock_skew_refused(shift):
    def clock():
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=shift)
    code, ctx = refused_code(provider(clock), ap_req_token(mint())[2])
    assert code == KRB_AP_ERR_SKEW
    assert "KRB_AP_ERR_SKEW" in ctx.failed


def test_small_skew_accepted():
    def clock():
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=200)
    ctx, _c, _s = handshake(provider(clock))
    assert ctx.complete


def test_expired_ticket_refused():
    now = datetime.datetime.now(datetime.timezone.utc)
    tgs = mint(start=now - datetime.timedelta(hours=12), end=now - datetime.timedelta(hours=1))
    assert refused_code(provider(), ap_req_token(tgs)[2])[0] == KRB_AP_ERR_TKT_EXPIRED


def test_not_yet_valid_ticket_refused():
    now = datetime.datetime.now(datetime.timezone.utc)
    tgs = mint(start=now + datetime.timedelta(hours=1), end=now + datetime.timedelta(hours=5))
    assert refused_code(provider(), ap_req_token(tgs)[2])[0] == KRB_AP_ERR_TKT_NYV


def test_ticket_for_another_service_key_refused():
    """A ticket for another service is encrypted with that service's key: KRB_AP_ERR_MODIFIED, like Windows."""
    tgs = mint(sname="HOST/" + seed.CA_HOST, key=OTHER_KEY)
    assert refused_code(provider(), ap_req_token(tgs)[2])[0] == KRB_AP_ERR_MODIFIED


def test_ticket_for_another_service_name_refused():
    tgs = mint(sname="HOST/dc1.lab.adcs.test")
    assert refused_code(provider(), ap_req_token(tgs)[2])[0] == KRB_AP_ERR_NOT_US


def test_rpcss_and_netbios_spns_accepted():
    for sname in ("RPCSS/" + seed.CA_HOST, "HOST/" + seed.CA_NETBIOS, "RPCSS/" + seed.CA_NETBIOS):
        ctx, _c, _s = handshake(provider(), tgs=mint(sname=sname))
        assert ctx.sname == sname


def test_other_realm_refused():
    assert refused_code(provider(), ap_req_token(mint(realm="OTHER.TEST"))[2])[0] == KRB_AP_ERR_NOT_US


def test_authenticator_for_another_client_refused():
    cipher, session, token = ap_req_token(mint("enroller"), user="Administrator")
    assert refused_code(provider(), token)[0] == KRB_AP_ERR_BADMATCH


def test_replayed_authenticator_refused():
    prov = provider()
    token = ap_req_token(mint())[2]
    assert not prov.new_context().accept(token).done
    assert refused_code(prov, token)[0] == KRB_AP_ERR_REPEAT


def test_corrupted_ticket_refused():
    token = bytearray(ap_req_token(mint())[2])
    token[-60] ^= 0x55           # inside the authenticator/ticket ciphertext
    prov = provider()
    ctx = prov.new_context()
    try:
        res = ctx.accept(bytes(token))
    except AuthError:
        return                   # unparseable: bind_nak
    assert ctx.failed and not res.done


def test_unknown_or_disabled_account_refused():
    for user in ("nobody", "disabled"):
        ctx = provider().new_context()
        res = ctx.accept(ap_req_token(mint(user), user)[2])
        assert ctx.failed and not res.done


def test_garbage_and_ntlm_in_spnego_refused():
    from impacket import ntlm
    from impacket.spnego import SPNEGO_NegTokenInit, TypesMech
    for token in (b"", b"\x60\x03\x06\x01\x00", os.urandom(64)):
        with pytest.raises(AuthError):
            provider().new_context().accept(token)
    blob = SPNEGO_NegTokenInit()
    blob["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    blob["MechToken"] = ntlm.getNTLMSSPType1("", "").getData()
    with pytest.raises(AuthError, match="none of the offered mechanisms"):
        provider().new_context().accept(blob.getData())      # a Kerberos-only Negotiate provider


# ---------------------------------------------------------------------------------------------------------
# SPNEGO as Windows clients speak it: mechListMIC (RFC 4178), NTLM inside SPNEGO
# ---------------------------------------------------------------------------------------------------------
def _mech_list_der(init_token):
    from impacket.spnego import SPNEGO_NegTokenInit
    body = b"".join(b"\x06" + bytes([len(m)]) + m for m in SPNEGO_NegTokenInit(init_token)["MechTypes"])
    return b"\x30" + bytes([len(body)]) + body


def _resp_fields(token):
    from adcslab.rpc.kerberos import _parse_neg_token_resp
    return _parse_neg_token_resp(token)


def _initiator_mic(key, data, seq):
    """RFC 4121 MIC token of the initiator with the acceptor's subkey (impacket's GSS_GetMIC pads the data for
    DCE; SPNEGO's mechListMIC is over the exact MechTypeList DER)."""
    head = struct.pack(">HB5sQ", 0x0404, 0x04, b"\xff" * 5, seq)
    return head + kcrypto._checksum_table[16].checksum(key, 25, data + head)


def test_spnego_kerberos_mech_list_mic_keeps_the_sequence():
    """The initiator's mechListMIC consumes its sequence number 0 (Windows sends one): the acceptor verifies it,
    answers with its own MIC (acceptor sequence 0), and the first wrap token after it is sequence 1 both ways."""
    from impacket.spnego import SPNEGO_NegTokenResp
    prov = provider()
    tgs = mint()
    cipher, session, token = ap_req_token(tgs)
    mech_list = _mech_list_der(token)
    ctx = prov.new_context()
    res = ctx.accept(token)
    cipher2, session2, leg3 = kerberosv5.getKerberosType3(cipher, session, res.reply_token)
    gss = gssapi.GSSAPI(cipher2)
    final = SPNEGO_NegTokenResp()
    final["ResponseToken"] = SPNEGO_NegTokenResp(leg3)["ResponseToken"]
    final["mechListMIC"] = _initiator_mic(session2, mech_list, 0)
    res2 = ctx.accept(final.getData())
    assert res2.done and ctx.complete
    state, _tok, server_mic = _resp_fields(res2.reply_token)
    assert state == 0 and server_mic is not None
    # the acceptor's MIC: RFC 4121 token, sent by the acceptor, its first sequence number (the one its AP-REP
    # announced), checksum with KG_USAGE_ACCEPTOR_SIGN
    assert server_mic[:2] == b"\x04\x04" and server_mic[2] & 1
    mic_seq = struct.unpack(">Q", server_mic[8:16])[0]
    prof = kcrypto._checksum_table[16]
    assert prof.checksum(session2, 23, mech_list + server_mic[:16]) == server_mic[16:28]
    stub = b"after the mechListMIC".ljust(32, b"\x00")
    ct, verifier = gss.GSS_Wrap(session2, stub, 1)
    assert ctx.unseal(b"H" * 24, ct, b"T" * 8, verifier) == stub
    body, v = ctx.seal(b"H" * 24, stub, b"T" * 8)
    assert struct.unpack(">Q", v[8:16])[0] == mic_seq + 1          # the MIC took the acceptor's first number
    trailer = SEC_TRAILER()
    trailer["auth_type"], trailer["auth_level"], trailer["auth_pad_len"] = 9, 6, 0
    plain, _ = gss.GSS_Unwrap(session2, body, mic_seq + 1, authData=trailer.getData() + v)
    assert plain == stub


def test_spnego_kerberos_bad_mech_list_mic_refused():
    from impacket.spnego import SPNEGO_NegTokenResp
    prov = provider()
    cipher, session, token = ap_req_token(mint())
    ctx = prov.new_context()
    res = ctx.accept(token)
    cipher2, session2, leg3 = kerberosv5.getKerberosType3(cipher, session, res.reply_token)
    final = SPNEGO_NegTokenResp()
    final["ResponseToken"] = SPNEGO_NegTokenResp(leg3)["ResponseToken"]
    final["mechListMIC"] = _initiator_mic(session2, b"\x30\x00", 0)   # over another list
    with pytest.raises(AuthError, match="mechListMIC"):
        ctx.accept(final.getData())
    assert ctx.failed and not ctx.complete


def _ntlm_spnego_provider(disable_kerberos=False):
    from adcslab.rpc.ntlmssp import NtlmProvider
    store = AccountStore([Account("enroller", "LAB", __import__("impacket.ntlm", fromlist=["compute_nthash"])
                                  .compute_nthash("Passw0rd!"), sid="S-1-5-21-1-2-3-1103")])
    ident = identity(store)
    keys = ServiceKeys({18: [(2, SERVICE_KEY.contents)]}, seed.CA_ACCOUNT, REALM)
    krb = None if disable_kerberos else KerberosProvider(ident, keys=keys)
    return SpnegoProvider(ident, kerberos=krb, ntlm=NtlmProvider(ident))


@pytest.mark.parametrize("with_mic", [True, False])
def test_spnego_ntlm_with_mech_list_mic(with_mic):
    """NTLM inside SPNEGO (what a Windows client falls back to when it names the CA by IP): NegTokenInit(NTLM,
    NEGOTIATE) -> CHALLENGE -> AUTHENTICATE + mechListMIC; the acceptor checks the MIC (sequence 0), answers with
    its own, resets RC4 (MS-SPNG 3.3.5.1), and the first sealed message is sequence 1. Without an NTLM MIC in the
    AUTHENTICATE a mechListMIC is optional."""
    from Cryptodome.Cipher import ARC4
    from impacket import ntlm
    from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech
    ctx = _ntlm_spnego_provider().new_context()
    nego = ntlm.getNTLMSSPType1("", "LAB", signingRequired=True)
    init = SPNEGO_NegTokenInit()
    init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    init["MechToken"] = nego.getData()
    res = ctx.accept(init.getData())
    state, challenge, _mic = _resp_fields(res.reply_token)
    assert state == 1 and challenge[:8] == b"NTLMSSP\x00"
    auth, session_key = ntlm.getNTLMSSPType3(nego, challenge, "enroller", "Passw0rd!", "LAB")
    flags = auth["flags"]
    mech_list = _mech_list_der(init.getData())
    final = SPNEGO_NegTokenResp()
    final["ResponseToken"] = auth.getData()
    client_sign = ntlm.SIGNKEY(flags, session_key, "Client")
    client_seal = ntlm.SEALKEY(flags, session_key, "Client")
    server_sign = ntlm.SIGNKEY(flags, session_key, "Server")
    server_seal = ntlm.SEALKEY(flags, session_key, "Server")
    out_rc4 = ARC4.new(client_seal)
    if with_mic:
        final["mechListMIC"] = ntlm.SIGN(flags, client_sign, mech_list, 0, out_rc4.encrypt).getData()
        out_rc4 = ARC4.new(client_seal)                    # MS-SPNG 3.3.5.1: RC4 restarts after the mechListMIC
    res2 = ctx.accept(final.getData())
    assert res2.done and ctx.complete and ctx.user == "enroller"
    state, _tok, server_mic = _resp_fields(res2.reply_token)
    assert state == 0
    in_rc4 = ARC4.new(server_seal)
    seq = 0
    if with_mic:
        assert server_mic == ntlm.SIGN(flags, server_sign, mech_list, 0, in_rc4.encrypt).getData()
        in_rc4 = ARC4.new(server_seal)
        seq = 1
    else:
        assert server_mic is None
    plain = b"first request".ljust(16, b"\x00")
    sealed = out_rc4.encrypt(plain)
    sig = ntlm.SIGN(flags, client_sign, b"H" + plain + b"T", seq, out_rc4.encrypt).getData()
    assert ctx.unseal(b"H", sealed, b"T", sig) == plain
    body, v = ctx.seal(b"H", plain, b"T")
    assert in_rc4.decrypt(body) == plain
    assert v == ntlm.SIGN(flags, server_sign, b"H" + plain + b"T", seq, in_rc4.encrypt).getData()


def test_spnego_ntlm_mic_required_when_authenticate_has_one():
    """An AUTHENTICATE with an NTLM MIC (MsvAvFlags 0x2, as Windows sends) and no mechListMIC is refused: a
    downgrade of the mechanism list would go unnoticed otherwise; with the mechListMIC it is accepted."""
    from impacket import ntlm
    from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech
    for with_mech_list_mic in (False, True):
        ctx = _ntlm_spnego_provider().new_context()
        init = SPNEGO_NegTokenInit()
        init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
        state = {}

        def accept_first(neg):
            init["MechToken"] = neg
            state["init"] = init.getData()
            return _resp_fields(ctx.accept(state["init"]).reply_token)[1]

        auth, key, flags = authenticate_with_mic(accept_first, "enroller", "Passw0rd!", "LAB")
        final = SPNEGO_NegTokenResp()
        final["ResponseToken"] = auth
        if with_mech_list_mic:
            from Cryptodome.Cipher import ARC4
            rc4 = ARC4.new(ntlm.SEALKEY(flags, key, "Client"))
            final["mechListMIC"] = ntlm.SIGN(flags, ntlm.SIGNKEY(flags, key, "Client"),
                                             _mech_list_der(state["init"]), 0, rc4.encrypt).getData()
            assert ctx.accept(final.getData()).done and ctx.inner.mic_present
        else:
            with pytest.raises(AuthError, match="mechListMIC missing although the NTLM AUTHENTICATE carried a MIC"):
                ctx.accept(final.getData())
            assert ctx.failed and not ctx.complete


def test_spnego_picks_first_supported_mech_and_asks_for_its_token():
    """Client prefers a mechanism the server lacks (with an optimistic token for it): the acceptor picks the next
    one it supports (NTLM here) and asks for its first token instead of using the optimistic one."""
    from impacket import ntlm
    from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech
    ctx = _ntlm_spnego_provider(disable_kerberos=True).new_context()
    init = SPNEGO_NegTokenInit()
    init["MechTypes"] = [TypesMech["MS KRB5 - Microsoft Kerberos 5"],
                         TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    init["MechToken"] = b"\x60\x00"          # an optimistic Kerberos token: not for the chosen mechanism
    res = ctx.accept(init.getData())
    assert not res.done
    state, token, _m = _resp_fields(res.reply_token)
    assert state == 1 and token is None           # accept-incomplete, supportedMech NTLM, no token yet
    assert b"\xa1\x0c\x06\x0a" + TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"] in res.reply_token
    nego = ntlm.getNTLMSSPType1("", "LAB", signingRequired=True)
    first = SPNEGO_NegTokenResp()
    first["ResponseToken"] = nego.getData()
    _s, challenge, _m = _resp_fields(ctx.accept(first.getData()).reply_token)
    assert challenge[:8] == b"NTLMSSP\x00" and struct.unpack_from("<I", challenge, 8)[0] == 2


# ---------------------------------------------------------------------------------------------------------
# per-message tokens
# ---------------------------------------------------------------------------------------------------------
def test_wrap_both_directions_with_impacket():
    ctx, cipher, session = handshake(provider())
    gss = gssapi.GSSAPI(cipher)
    for seq, n in enumerate((0, 3, 16, 17, 250)):
        stub = os.urandom(n) + b"\xbb" * ((4 - n % 4) % 4)
        ct, verifier = gss.GSS_Wrap(session, stub, seq)
        assert ctx.unseal(b"H" * 24, ct, b"T" * 8, verifier) == stub
        pad = (16 - len(stub) % 16) % 16
        body, v = ctx.seal(b"H" * 24, stub + b"\x00" * pad, b"T" * 8)
        assert len(v) == ctx.verifier_size(C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        trailer = SEC_TRAILER()
        trailer["auth_type"], trailer["auth_level"], trailer["auth_pad_len"] = 9, 6, pad
        plain, _ = gss.GSS_Unwrap(session, body, seq, authData=trailer.getData() + v)
        assert plain == stub + b"\x00" * pad


def test_unwrap_rejects_tampering_replay_and_reflection():
    ctx, cipher, session = handshake(provider())
    gss = gssapi.GSSAPI(cipher)
    ct, verifier = gss.GSS_Wrap(session, b"A" * 32, 0)
    bad = bytearray(ct)
    bad[3] ^= 1
    with pytest.raises(IntegrityError):
        ctx.unseal(b"", bytes(bad), b"", verifier)
    assert ctx.unseal(b"", ct, b"", verifier) == b"A" * 32
    with pytest.raises(IntegrityError, match="sequence"):
        ctx.unseal(b"", ct, b"", verifier)           # replayed: sequence 0 again
    # a token the acceptor itself produced comes back: refused
    body, v = ctx.seal(b"", b"B" * 32, b"")
    with pytest.raises(IntegrityError):
        ctx.unseal(b"", body, b"", v)


def test_mic_with_impacket():
    ctx, cipher, session = handshake(provider())
    gss = gssapi.GSSAPI(cipher)
    header = struct.pack("<BBBBIHHI", 5, 0, 0, 3, 0x10, 0, 0, 1) + b"\0" * 8   # request PDU header, no object
    stub = b"hello wor!!!"
    mic = gss.GSS_GetMIC(session, stub, 0)
    ctx.verify(header + stub + b"T" * 8, mic)
    with pytest.raises(IntegrityError):
        ctx.verify(header + b"jello wor!!!" + b"T" * 8, gss.GSS_GetMIC(session, stub, 1))


def test_header_signing_iov_covers_header_and_trailer():
    key = kcrypto.Key(18, os.urandom(32))
    conf, data, tail = aes_seal_iov(key, 24, b"HEADER" * 4, b"D" * 48, b"TRAILER!", b"\xff" * 4 + b"h" * 16)
    full = conf + data + tail
    out, t = aes_unseal_iov(key, 24, b"HEADER" * 4, full, b"TRAILER!", 48)
    assert out == b"D" * 48 and t == b"\xff" * 4 + b"h" * 16
    with pytest.raises(IntegrityError):
        aes_unseal_iov(key, 24, b"HEADEX" * 4, full, b"TRAILER!", 48)
    with pytest.raises(IntegrityError):
        aes_unseal_iov(key, 24, b"HEADER" * 4, full, b"TRAILER?", 48)


def test_header_signing_seal_unseal_roundtrip():
    """With PFC_SUPPORT_HEADER_SIGN the server's seal covers header and trailer; the same IOV code unseals."""
    ctx, cipher, session = handshake(provider())

    class Conn:
        header_signing = True
    ctx.connection = Conn()
    key = ctx.acceptor_subkey
    body, verifier = ctx.seal(b"H" * 24, b"P" * 32, b"T" * 8)
    hdr = verifier[:16]
    rotated = verifier[16:] + body
    ec, rrc = struct.unpack(">HH", hdr[4:8])
    assert (ec, rrc, len(verifier)) == (16, 28, 76)       # what MIT krb5 and Windows produce in DCE style
    full = rotated[rrc + ec:] + rotated[:rrc + ec]
    data, tail = aes_unseal_iov(key, 22, b"H" * 24, full, b"T" * 8, 32)
    assert data == b"P" * 32
    with pytest.raises(IntegrityError):
        aes_unseal_iov(key, 22, b"X" * 24, full, b"T" * 8, 32)


# ---------------------------------------------------------------------------------------------------------
# provider selection and the keytab
# ---------------------------------------------------------------------------------------------------------
def test_default_providers_keytab_and_ntlm_switch(tmp_path, monkeypatch):
    monkeypatch.delenv("ADCS_LAB_KERBEROS_KEYTAB", raising=False)
    monkeypatch.delenv("ADCS_LAB_DISABLE_NTLM", raising=False)
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text("[]")
    store = AccountStore.from_file(str(accounts_file))
    assert keytab_path_for(store) is None
    assert set(default_providers(store)) == {9, 10}          # Negotiate with NTLM inside
    assert set(default_providers(store, disable_ntlm=True)) == set()
    (tmp_path / seed.CA_KEYTAB).write_bytes(b"\x05\x02")
    assert keytab_path_for(store) == str(tmp_path / seed.CA_KEYTAB)
    assert set(default_providers(store)) == {9, 10, 16}
    monkeypatch.setenv("ADCS_LAB_DISABLE_NTLM", "1")
    assert set(default_providers(store)) == {9, 16}
    assert set(default_providers(store, disable_ntlm=False)) == {9, 10, 16}


def test_service_keys_from_keytab(tmp_path):
    path = tmp_path / "svc.keytab"
    path.write_bytes(make_keytab(seed.CA_ACCOUNT, REALM, [(2, 18, SERVICE_KEY.contents),
                                                          (1, 18, OTHER_KEY.contents), (2, 23, b"r" * 16)]))
    keys = ServiceKeys.from_keytab(str(path))
    assert keys.principal == seed.CA_ACCOUNT and keys.realm == REALM
    assert [k.contents for k in keys.candidates(18, 2)] == [SERVICE_KEY.contents]
    assert [k.contents for k in keys.candidates(18, None)] == [SERVICE_KEY.contents, OTHER_KEY.contents]
    assert keys.candidates(17, None) == []


def make_keytab(principal, realm, entries):
    """Keytab v0x502 bytes: entries = [(kvno, etype, key)]."""
    def counted(b):
        return struct.pack("!H", len(b)) + b
    out = b"\x05\x02"
    for kvno, etype, key in entries:
        comps = principal.split("/")
        body = struct.pack("!H", len(comps)) + counted(realm.encode()) + b"".join(counted(c.encode())
                                                                                  for c in comps)
        body += struct.pack("!I", 1) + struct.pack("!I", 0) + struct.pack("!B", kvno % 256)
        body += struct.pack("!H", etype) + counted(key) + struct.pack("!I", kvno)
        out += struct.pack("!i", len(body)) + body
    return out


# ---------------------------------------------------------------------------------------------------------
# over TCP with impacket's DCE/RPC client
# ---------------------------------------------------------------------------------------------------------
def _echo(ctx, stub):
    if ctx.auth is None:
        raise RpcFault(C.RPC_S_ACCESS_DENIED)
    return (ctx.auth.user + "|" + ctx.auth.account.sid + "|").encode() + stub


def _server(disable_ntlm=False, clock=None):
    ident_accounts = identity().accounts
    krb = KerberosProvider(identity(ident_accounts), keys=ServiceKeys({18: [(2, SERVICE_KEY.contents)]},
                                                                      seed.CA_ACCOUNT, REALM), clock=clock)
    providers = {9: SpnegoProvider(krb.identity, kerberos=krb), 16: krb}
    if not disable_ntlm:
        from adcslab.rpc import NtlmProvider
        providers[10] = NtlmProvider
    iface = Interface(IFACE, (1, 0), {0: _echo}, min_authn_level=C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    return RpcServer(ADDRESS, 0, [iface], ident_accounts, security_providers=providers).start()


def _dce(port, tgs, user="enroller", level=RPC_C_AUTHN_LEVEL_PKT_PRIVACY, auth_type=RPC_C_AUTHN_GSS_NEGOTIATE):
    t = transport.DCERPCTransportFactory("ncacn_ip_tcp:%s[%d]" % (ADDRESS, port))
    t.set_credentials(user, "" if auth_type != RPC_C_AUTHN_WINNT else "x", REALM, "", "", "", None, tgs)
    t.set_kerberos(auth_type == RPC_C_AUTHN_GSS_NEGOTIATE, None)
    dce = t.get_dce_rpc()
    dce.set_auth_type(auth_type)
    dce.set_auth_level(level)
    dce.connect()
    return dce


def test_tcp_privacy_round_trip_and_fragments():
    srv = _server()
    try:
        dce = _dce(srv.port, mint())
        dce.bind(uuidtup_to_bin((IFACE, "1.0")))
        for size in (0, 5, 4000, 20000):
            dce.call(0, b"x" * size)
            reply = dce.recv()
            assert reply == b"enroller|S-1-5-21-1-2-3-1103|" + b"x" * size
        dce.disconnect()
    finally:
        srv.stop()


def test_tcp_skew_surfaces_as_krb_error_and_ntlm_disabled():
    def clock():
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=20)
    srv = _server(disable_ntlm=True, clock=clock)
    try:
        dce = _dce(srv.port, mint())
        with pytest.raises(kerberosv5.KerberosError) as info:
            dce.bind(uuidtup_to_bin((IFACE, "1.0")))
        assert info.value.getErrorCode() == KRB_AP_ERR_SKEW
        dce = _dce(srv.port, None, auth_type=RPC_C_AUTHN_WINNT)
        with pytest.raises(DCERPCException):
            dce.bind(uuidtup_to_bin((IFACE, "1.0")))
    finally:
        srv.stop()


def test_tcp_integrity_level_refused_below_privacy():
    srv = _server()
    try:
        dce = _dce(srv.port, mint(), level=RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
        dce.bind(uuidtup_to_bin((IFACE, "1.0")))
        dce.call(0, b"abc")
        with pytest.raises(DCERPCException) as info:
            dce.recv()
        assert "access_denied" in str(info.value).lower() or "0x5" in str(info.value).lower() \
            or "rpc_s_access_denied" in str(info.value).lower()
    finally:
        srv.stop()


def test_rc4_ticket_gets_an_aes_acceptor_subkey():
    """An RC4 (etype 23) session key still ends in AES per-message tokens: the acceptor subkey is AES."""
    from impacket.krb5.asn1 import AP_REP, EncAPRepPart
    from impacket.spnego import SPNEGO_NegTokenResp
    from pyasn1.codec.der import decoder
    tgs = mint(session_etype=23)
    rc4, session, token = ap_req_token(tgs)
    ctx = provider().new_context()
    reply = SPNEGO_NegTokenResp(ctx.accept(token).reply_token)["ResponseToken"]
    ap_rep = decoder.decode(reply, asn1Spec=AP_REP())[0]
    part = decoder.decode(rc4.decrypt(session, 12, ap_rep["enc-part"]["cipher"].asOctets()),
                          asn1Spec=EncAPRepPart())[0]
    subkey = kcrypto.Key(int(part["subkey"]["keytype"]), part["subkey"]["keyvalue"].asOctets())
    assert subkey.enctype == 18
    # the client's DCE-style AP-REP, encrypted with the ticket session key (impacket uses the subkey's
    # enctype profile here, which only works when both are the same type)
    mine = EncAPRepPart()
    mine["ctime"] = str(part["ctime"])
    mine["cusec"] = int(part["cusec"])
    mine["seq-number"] = int(part["seq-number"])
    ap_rep["enc-part"]["etype"] = 23
    ap_rep["enc-part"]["cipher"] = rc4.encrypt(session, 12, encoder.encode(mine), None)
    leg3 = SPNEGO_NegTokenResp()
    leg3["ResponseToken"] = encoder.encode(ap_rep)
    assert ctx.accept(leg3.getData()).done
    gss = gssapi.GSSAPI(kcrypto._enctype_table[18]())
    ct, verifier = gss.GSS_Wrap(subkey, b"R" * 32, 0)
    assert ctx.unseal(b"", ct, b"", verifier) == b"R" * 32


def test_replay_cache_shared_by_kerberos_and_negotiate(tmp_path, monkeypatch):
    monkeypatch.delenv("ADCS_LAB_KERBEROS_KEYTAB", raising=False)
    (tmp_path / seed.CA_KEYTAB).write_bytes(make_keytab(seed.CA_ACCOUNT, REALM, [(2, 18, SERVICE_KEY.contents)]))
    (tmp_path / "accounts.json").write_text("[]")
    store = AccountStore.from_file(str(tmp_path / "accounts.json"))
    srv = RpcServer(ADDRESS, 0, [], store)
    krb, neg = srv.security_providers[16], srv.security_providers[9]
    assert neg.kerberos is krb
    token = ap_req_token(mint())[2]
    neg.new_context().accept(token)
    from impacket.spnego import SPNEGO_NegTokenInit
    ctx = krb.new_context()
    ctx.accept(SPNEGO_NegTokenInit(token)["MechToken"])
    assert "KRB_AP_ERR_REPEAT" in ctx.failed
