"""Kerberos (RPC_C_AUTHN_GSS_KERBEROS = 16) and SPNEGO (RPC_C_AUTHN_GSS_NEGOTIATE = 9) acceptors for the RPC server.

What a Windows server does for DCE/RPC (MS-KILE 3.4.5, MS-RPCE 3.3.1.5.2, RFC 4120/4121):

* bind: the client's AP-REQ (GSS framed, or raw) is verified with the service account's long-term keys from a
  keytab (the CA's computer account seed.CA_ACCOUNT): ticket decrypted (key usage 2), authenticator decrypted (11) and
  matched with the ticket's client, clock skew (5 minutes), ticket validity, replay; the 0x8003 checksum's GSS
  flags say whether the client wants DCE style.
* DCE style (GSS_C_DCE_STYLE, always used by DCE/RPC): the bind_ack carries a raw AP-REP (mutual
  authentication) with an acceptor subkey and our sequence number; the client answers with its own AP-REP
  (alter_context or auth3), which we decrypt and check; then the context is complete.
* failures: a GSS-framed KRB-ERROR goes back in the bind_ack (as Windows does, so clients can show
  KRB_AP_ERR_SKEW and the like) and the security context is marked failed: every request on it is answered with
  fault 5 (access denied). Tokens that are not Kerberos at all get a bind_nak.
* per-message tokens: RFC 4121 (AES) with the acceptor subkey. Packet privacy: wrap token in DCE style, i.e. the
  token header and the rotated confounder/filler/header copy/checksum in the auth verifier, the stub encrypted in
  place (RRC 28, rotation RRC + EC, as impacket and Windows do). With header signing (PFC_SUPPORT_HEADER_SIGN
  negotiated) the PDU header and sec_trailer are covered by the checksum as SIGN_ONLY buffers (the GSS IOV order
  Heimdal/Samba use: confounder, header, stub, sec_trailer, filler, token header copy). Packet integrity: MIC
  token over the stub (or the whole PDU with header signing).

The caller's identity: the ticket's client principal, mapped to the AccountStore account (sAMAccountName @
realm); when the account is not in the store, a minimal account is built from the PAC's logon info (user SID and
group SIDs), so the CA policy can look the caller up by SID.

The keytab: ``KerberosProvider(identity, keytab=PATH)``; ``keytab_path_for(accounts)`` finds
``$ADCS_LAB_KERBEROS_KEYTAB`` or ``seed.CA_KEYTAB`` next to the accounts file (see ``default_providers``).
"""

import datetime
import hmac
import logging
import os
import random
import struct
import threading
import time
from typing import Dict, List, Optional, Tuple

from Cryptodome.Hash import HMAC, SHA1
from impacket.krb5 import constants as KC
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.asn1 import (AP_REP, AP_REQ, AD_IF_RELEVANT, Authenticator, EncAPRepPart, EncTicketPart,
                                KRB_ERROR)
from impacket.krb5.keytab import Keytab
from impacket.krb5.types import KerberosTime
from pyasn1.codec.der import decoder, encoder
from pyasn1.type.univ import noValue

from .. import seed
from . import constants as C
from .accounts import Account
from .security import AcceptResult, AuthError, IntegrityError, SecurityContext, SecurityProvider

LOG = logging.getLogger("adcslab.rpc.kerberos")

KRB5_OID_DER = bytes.fromhex("06092a864886f712010202")          # 1.2.840.113554.1.2.2
MS_KRB5_OID_DER = bytes.fromhex("06092a864882f712010202")       # 1.2.840.48018.1.2.2
SPNEGO_OID_DER = bytes.fromhex("06062b0601050502")              # 1.3.6.1.5.5.2
TOK_AP_REQ = b"\x01\x00"
TOK_AP_REP = b"\x02\x00"
TOK_KRB_ERROR = b"\x03\x00"

GSS_C_DELEG_FLAG = 0x01
GSS_C_MUTUAL_FLAG = 0x02
GSS_C_CONF_FLAG = 0x10
GSS_C_INTEG_FLAG = 0x20
GSS_C_DCE_STYLE = 0x1000

KG_USAGE_ACCEPTOR_SEAL = 22
KG_USAGE_ACCEPTOR_SIGN = 23
KG_USAGE_INITIATOR_SEAL = 24
KG_USAGE_INITIATOR_SIGN = 25

FLAG_SENT_BY_ACCEPTOR = 0x01
FLAG_SEALED = 0x02
FLAG_ACCEPTOR_SUBKEY = 0x04

# RFC 4120 7.5.9
KRB_AP_ERR_BAD_INTEGRITY = 31
KRB_AP_ERR_TKT_EXPIRED = 32
KRB_AP_ERR_TKT_NYV = 33
KRB_AP_ERR_REPEAT = 34
KRB_AP_ERR_NOT_US = 35
KRB_AP_ERR_BADMATCH = 36
KRB_AP_ERR_SKEW = 37
KRB_AP_ERR_BADVERSION = 39
KRB_AP_ERR_MSG_TYPE = 40
KRB_AP_ERR_MODIFIED = 41
KRB_AP_ERR_BADKEYVER = 44
KRB_AP_ERR_NOKEY = 45
KRB_AP_ERR_MUT_FAIL = 46
KRB_AP_ERR_INAPP_CKSUM = 50
KRB_ERR_GENERIC = 60

ERROR_NAMES = {v: k for k, v in globals().items() if k.startswith("KRB_") and isinstance(v, int)}

DEFAULT_CLOCK_SKEW = 300
DCE_EC = 16          # filler ("extra count") in our wrap tokens
AES_ETYPES = (18, 17)
RC4_ETYPE = 23

KEYTAB_ENV = "ADCS_LAB_KERBEROS_KEYTAB"
DISABLE_NTLM_ENV = "ADCS_LAB_DISABLE_NTLM"


class KrbApError(AuthError):
    """An AP exchange failure: answered with a KRB-ERROR token, then access denied."""

    def __init__(self, code: int, message: str):
        super().__init__("%s (%d): %s" % (ERROR_NAMES.get(code, "KRB_ERROR"), code, message),
                         status=C.RPC_S_ACCESS_DENIED)
        self.code = code


# ---------------------------------------------------------------------------------------------------------
# DER / GSS framing helpers
# ---------------------------------------------------------------------------------------------------------
def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_read(data: bytes, off: int) -> Tuple[int, int, int]:
    """(tag, value offset, value length) of the TLV at off."""
    if off + 2 > len(data):
        raise AuthError("truncated DER")
    tag = data[off]
    first = data[off + 1]
    off += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or off + n > len(data):
            raise AuthError("bad DER length")
        length = int.from_bytes(data[off:off + n], "big")
        off += n
    if off + length > len(data):
        raise AuthError("DER value outside the token")
    return tag, off, length


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def gss_frame(tok_id: bytes, inner: bytes, oid_der: bytes = KRB5_OID_DER) -> bytes:
    return _tlv(0x60, oid_der + tok_id + inner)


def gss_unframe(token: bytes) -> Tuple[Optional[bytes], bytes, bytes]:
    """(oid DER or None, tok_id or b'', inner) of a GSS InitialContextToken-framed Kerberos token, or the raw one."""
    if not token:
        raise AuthError("empty Kerberos token")
    if token[0] != 0x60:
        return None, b"", token
    _tag, off, length = _der_read(token, 0)
    body = token[off:off + length]
    tag, voff, vlen = _der_read(body, 0)
    if tag != 0x06:
        raise AuthError("GSS token without mechanism OID")
    oid = body[:voff + vlen]
    rest = body[voff + vlen:]
    return oid, rest[:2], rest[2:]


# ---------------------------------------------------------------------------------------------------------
# Service keys
# ---------------------------------------------------------------------------------------------------------
class ServiceKeys:
    """Long-term keys of the service account: {etype: [(kvno, key)]}, newest kvno first."""

    def __init__(self, keys: Dict[int, List[Tuple[int, bytes]]], principal: str = "", realm: str = ""):
        self.keys = {e: sorted(v, key=lambda x: -x[0]) for e, v in keys.items()}
        self.principal = principal
        self.realm = realm

    @classmethod
    def from_keytab(cls, path: str, principal: Optional[str] = None) -> "ServiceKeys":
        with open(path, "rb") as fh:
            kt = Keytab(fh.read())
        keys: Dict[int, List[Tuple[int, bytes]]] = {}
        first = None
        realm = ""
        for entry in kt.entries:
            if getattr(entry, "deleted", False):
                continue
            main = entry.main_part
            name = main["principal"].prettyPrint()
            name = name.decode() if isinstance(name, bytes) else str(name)
            pname, _, prealm = name.rpartition("@")
            if principal and pname.upper() != principal.upper():
                continue
            if first is None:
                first, realm = pname, prealm
            elif pname.upper() != first.upper():
                continue   # one account per keytab: the first principal's keys
            etype = int(main["keyblock"]["keytype"])
            kvno = int(getattr(entry, "kvno", None) or main["vno8"])
            keys.setdefault(etype, []).append((kvno, bytes(main["keyblock"]["keyvalue"]["data"])))
        if not keys:
            raise ValueError("keytab %s has no keys%s" % (path, " for %s" % principal if principal else ""))
        return cls(keys, first or "", realm)

    def candidates(self, etype: int, kvno: Optional[int]) -> List[kcrypto.Key]:
        entries = self.keys.get(etype, [])
        if kvno is not None:
            exact = [k for v, k in entries if v == kvno]
            if exact:
                return [kcrypto.Key(etype, k) for k in exact]
        return [kcrypto.Key(etype, k) for _v, k in entries]


def keytab_path_for(accounts=None, explicit: Optional[str] = None) -> Optional[str]:
    """The CA service keytab: explicit, $ADCS_LAB_KERBEROS_KEYTAB, or seed.CA_KEYTAB next to the accounts file."""
    for cand in (explicit, os.environ.get(KEYTAB_ENV)):
        if cand:
            return cand
    src = getattr(accounts, "source_path", None)
    if src:
        path = os.path.join(os.path.dirname(os.path.abspath(src)), seed.CA_KEYTAB)
        if os.path.exists(path):
            return path
    return None


# ---------------------------------------------------------------------------------------------------------
# PAC (MS-PAC): logon info -> SIDs (best effort; only for callers missing from the AccountStore)
# ---------------------------------------------------------------------------------------------------------
def _pac_from_authdata(authdata) -> Optional[bytes]:
    try:
        for ad in authdata:
            if int(ad["ad-type"]) == 1:  # AD-IF-RELEVANT
                inner = decoder.decode(ad["ad-data"].asOctets(), asn1Spec=AD_IF_RELEVANT())[0]
                for sub in inner:
                    if int(sub["ad-type"]) == 128:  # AD-WIN2K-PAC
                        return sub["ad-data"].asOctets()
    except Exception:
        return None
    return None


def pac_sids(pac: bytes) -> Tuple[str, List[str]]:
    """(user SID, group SIDs) from the KERB_VALIDATION_INFO (logon info, type 1) of a PAC, or ("", [])."""
    try:
        from impacket.krb5.pac import PACTYPE, PAC_INFO_BUFFER, PAC_LOGON_INFO, VALIDATION_INFO
        pactype = PACTYPE(pac)
        buffers = pactype["Buffers"]
        for i in range(pactype["cBuffers"]):
            info = PAC_INFO_BUFFER(buffers[i * 16:(i + 1) * 16])
            if info["ulType"] != PAC_LOGON_INFO:
                continue
            data = pac[info["Offset"]:info["Offset"] + info["cbBufferSize"]]
            vi = VALIDATION_INFO()
            vi.fromString(data)
            vi.fromStringReferents(data[len(vi.getData()):])
            d = vi["Data"]
            dom = d["LogonDomainId"].formatCanonical()
            user = "%s-%d" % (dom, d["UserId"])
            groups = ["%s-%d" % (dom, g["RelativeId"]) for g in d["GroupIds"]]
            for extra in d["ExtraSids"] or []:
                groups.append(extra["Sid"].formatCanonical())
            return user, groups
    except Exception as exc:  # best effort: a PAC we cannot read leaves the AccountStore identity
        LOG.debug("PAC not parsed: %s", exc)
    return "", []


# ---------------------------------------------------------------------------------------------------------
# Per-message tokens (RFC 4121, DCE style)
# ---------------------------------------------------------------------------------------------------------
def _enc_profile(etype: int):
    return kcrypto._enctype_table[etype]


def _hmac_sha1_96(key: kcrypto.Key, data: bytes) -> bytes:
    return HMAC.new(key.contents, data, SHA1).digest()[:12]


def aes_seal_iov(key: kcrypto.Key, usage: int, sign_before: bytes, data: bytes, sign_after: bytes,
                 tail: bytes, confounder: Optional[bytes] = None) -> Tuple[bytes, bytes, bytes]:
    """RFC 3961 simplified-profile encryption with SIGN_ONLY buffers (Heimdal/MIT IOV semantics).

    HMAC over confounder | sign_before | data | sign_after | tail; CBC-CTS over confounder | data | tail.
    Returns (encrypted confounder, encrypted data, encrypted tail + checksum).
    """
    prof = _enc_profile(key.enctype)
    ki = prof.derive(key, struct.pack(">IB", usage, 0x55))
    ke = prof.derive(key, struct.pack(">IB", usage, 0xAA))
    conf = confounder if confounder is not None else os.urandom(16)
    mac = _hmac_sha1_96(ki, conf + sign_before + data + sign_after + tail)
    ct = prof.basic_encrypt(ke, conf + data + tail)
    return ct[:16], ct[16:16 + len(data)], ct[16 + len(data):] + mac


def aes_unseal_iov(key: kcrypto.Key, usage: int, sign_before: bytes, ciphertext: bytes, sign_after: bytes,
                   data_len: int) -> Tuple[bytes, bytes]:
    """Inverse of aes_seal_iov on the contiguous ciphertext (conf | data | tail) + mac; returns (data, tail)."""
    prof = _enc_profile(key.enctype)
    ki = prof.derive(key, struct.pack(">IB", usage, 0x55))
    ke = prof.derive(key, struct.pack(">IB", usage, 0xAA))
    if len(ciphertext) < 16 + 12 + data_len:
        raise IntegrityError("wrap token too short")
    body, mac = ciphertext[:-12], ciphertext[-12:]
    plain = prof.basic_decrypt(ke, body)
    conf, data, tail = plain[:16], plain[16:16 + data_len], plain[16 + data_len:]
    expected = _hmac_sha1_96(ki, conf + sign_before + data + sign_after + tail)
    if not hmac.compare_digest(expected, mac):
        raise IntegrityError("Kerberos wrap token checksum mismatch")
    return data, tail


def _rotate_right(data: bytes, n: int) -> bytes:
    if not data:
        return data
    n %= len(data)
    return data[len(data) - n:] + data[:len(data) - n]


def _rotate_left(data: bytes, n: int) -> bytes:
    if not data:
        return data
    n %= len(data)
    return data[n:] + data[:n]


def _pdu_header_len(message: bytes) -> int:
    """Header length of a request/response PDU (24, or 40 with an object UUID)."""
    ptype = message[2]
    if ptype == C.PTYPE_REQUEST and message[3] & C.PFC_OBJECT_UUID:
        return 40
    return 24


class KerberosContext(SecurityContext):
    auth_type = C.RPC_C_AUTHN_GSS_KERBEROS

    def __init__(self, provider: "KerberosProvider"):
        super().__init__()
        self.provider = provider
        self.state = "initial"
        self.dce_style = True
        self.gss_flags = 0
        self.client_principal = ""
        self.ticket_session_key: Optional[kcrypto.Key] = None
        self.initiator_subkey: Optional[kcrypto.Key] = None
        self.acceptor_subkey: Optional[kcrypto.Key] = None
        self.recv_seq = 0
        self.send_seq = 0
        self.error_token = b""
        self.error_code = 0
        self.sname = ""
        self.pac = None
        self.pac_sid = ""
        self.pac_group_sids: List[str] = []

    # -- handshake ---------------------------------------------------------------------------
    def accept(self, token: bytes) -> AcceptResult:
        if self.complete or self.failed:
            raise AuthError("Kerberos context already finished")
        if self.state == "initial":
            try:
                reply = self._accept_ap_req(token)
            except KrbApError as exc:
                self.failed = str(exc)
                self.error_code = exc.code
                self.provider.log.warning("Kerberos AP-REQ refused: %s", exc)
                self.error_token = self.provider.krb_error_token(exc.code)
                return AcceptResult(self.error_token, False)
            return AcceptResult(reply, self.complete)
        if self.state == "wait_ap_rep":
            self._accept_client_ap_rep(token)
            return AcceptResult(b"", True)
        raise AuthError("unexpected Kerberos token")

    def _accept_ap_req(self, token: bytes) -> bytes:
        oid, tok_id, inner = gss_unframe(token)
        if oid is not None and (oid not in (KRB5_OID_DER, MS_KRB5_OID_DER) or tok_id != TOK_AP_REQ):
            raise AuthError("not a Kerberos AP-REQ token")
        try:
            ap_req = decoder.decode(inner, asn1Spec=AP_REQ())[0]
        except Exception:
            raise AuthError("malformed AP-REQ")
        if int(ap_req["pvno"]) != 5:
            raise KrbApError(KRB_AP_ERR_BADVERSION, "protocol version %s" % ap_req["pvno"])
        if int(ap_req["msg-type"]) != 14:
            raise KrbApError(KRB_AP_ERR_MSG_TYPE, "message type %s" % ap_req["msg-type"])
        prov = self.provider
        ticket = ap_req["ticket"]
        realm = str(ticket["realm"])
        sname = "/".join(str(c) for c in ticket["sname"]["name-string"])
        self.sname = sname
        if realm.upper() != prov.realm.upper():
            raise KrbApError(KRB_AP_ERR_NOT_US, "ticket for realm %s" % realm)
        if not prov.accepts_service(sname):
            raise KrbApError(KRB_AP_ERR_NOT_US, "ticket for %s, not one of our service principals" % sname)
        etype = int(ticket["enc-part"]["etype"])
        kvno = ticket["enc-part"]["kvno"]
        kvno = int(kvno) if kvno.isValue else None
        keys = prov.keys.candidates(etype, kvno)
        if not keys:
            raise KrbApError(KRB_AP_ERR_NOKEY, "no service key for encryption type %d" % etype)
        cipher = _enc_profile(etype)
        plain = None
        for key in keys:
            try:
                plain = cipher.decrypt(key, 2, ticket["enc-part"]["cipher"].asOctets())
                break
            except Exception:
                continue
        if plain is None:
            raise KrbApError(KRB_AP_ERR_MODIFIED, "ticket for %s does not decrypt with our key (wrong service "
                                                  "or key version)" % sname)
        enc_ticket = decoder.decode(plain, asn1Spec=EncTicketPart())[0]
        skey = kcrypto.Key(int(enc_ticket["key"]["keytype"]), enc_ticket["key"]["keyvalue"].asOctets())
        scipher = _enc_profile(skey.enctype)
        auth_etype = int(ap_req["authenticator"]["etype"])
        if auth_etype != skey.enctype:
            raise KrbApError(KRB_AP_ERR_MODIFIED, "authenticator etype %d differs from the session key" % auth_etype)
        try:
            auth_plain = scipher.decrypt(skey, 11, ap_req["authenticator"]["cipher"].asOctets())
        except Exception:
            raise KrbApError(KRB_AP_ERR_MODIFIED, "authenticator does not decrypt with the session key")
        auth = decoder.decode(auth_plain, asn1Spec=Authenticator())[0]

        t_cname = "/".join(str(c) for c in enc_ticket["cname"]["name-string"])
        t_crealm = str(enc_ticket["crealm"])
        a_cname = "/".join(str(c) for c in auth["cname"]["name-string"])
        a_crealm = str(auth["crealm"])
        if t_cname.upper() != a_cname.upper() or t_crealm.upper() != a_crealm.upper():
            raise KrbApError(KRB_AP_ERR_BADMATCH, "authenticator is for %s@%s, ticket for %s@%s"
                             % (a_cname, a_crealm, t_cname, t_crealm))
        now = prov.now()
        ctime = KerberosTime.from_asn1(auth["ctime"]).replace(tzinfo=datetime.timezone.utc)
        skew = abs((now - ctime).total_seconds())
        if skew > prov.clock_skew:
            raise KrbApError(KRB_AP_ERR_SKEW, "client time %s is %d s off" % (ctime.isoformat(), skew))
        cusec = int(auth["cusec"])
        if not prov.remember(t_cname, t_crealm, ctime, cusec, sname):
            raise KrbApError(KRB_AP_ERR_REPEAT, "authenticator replayed")
        start_field = enc_ticket["starttime"] if enc_ticket["starttime"].isValue else enc_ticket["authtime"]
        starttime = KerberosTime.from_asn1(start_field).replace(tzinfo=datetime.timezone.utc)
        endtime = KerberosTime.from_asn1(enc_ticket["endtime"]).replace(tzinfo=datetime.timezone.utc)
        slack = datetime.timedelta(seconds=prov.clock_skew)
        if starttime - slack > now:
            raise KrbApError(KRB_AP_ERR_TKT_NYV, "ticket valid from %s" % starttime.isoformat())
        if endtime + slack < now:
            raise KrbApError(KRB_AP_ERR_TKT_EXPIRED, "ticket expired at %s" % endtime.isoformat())
        flags_bits = enc_ticket["flags"]
        try:
            if flags_bits[KC.TicketFlags.invalid.value]:
                raise KrbApError(KRB_AP_ERR_TKT_NYV, "ticket has the INVALID flag")
        except IndexError:
            pass

        # GSS checksum (RFC 4121 4.1.1): flags; DCE style decides the number of legs
        gss_flags = 0
        if auth["cksum"].isValue:
            ctype = int(auth["cksum"]["cksumtype"])
            cdata = auth["cksum"]["checksum"].asOctets()
            if ctype != 0x8003 or len(cdata) < 24:
                raise KrbApError(KRB_AP_ERR_INAPP_CKSUM, "authenticator checksum type %d" % ctype)
            lgth = struct.unpack_from("<I", cdata, 0)[0]
            if lgth != 16:
                raise KrbApError(KRB_AP_ERR_INAPP_CKSUM, "channel binding length %d" % lgth)
            gss_flags = struct.unpack_from("<I", cdata, 20)[0]
        self.gss_flags = gss_flags
        self.dce_style = bool(gss_flags & GSS_C_DCE_STYLE)
        if auth["subkey"].isValue:
            self.initiator_subkey = kcrypto.Key(int(auth["subkey"]["keytype"]),
                                                auth["subkey"]["keyvalue"].asOctets())
        self.recv_seq = int(auth["seq-number"]) if auth["seq-number"].isValue else 0
        self.ticket_session_key = skey
        self.client_principal = "%s@%s" % (t_cname, t_crealm)
        self.user, self.domain = t_cname, t_crealm
        self.pac = _pac_from_authdata(enc_ticket["authorization-data"]) \
            if enc_ticket["authorization-data"].isValue else None
        self.pac_sid, self.pac_group_sids = pac_sids(self.pac) if self.pac else ("", [])
        self.account = prov.map_account(t_cname, t_crealm, self.pac)
        if self.account is not None and self.pac_sid and self.account.sid and self.pac_sid != self.account.sid:
            prov.log.warning("Kerberos: %s has SID %s in the PAC but %s in the account store", t_cname,
                             self.pac_sid, self.account.sid)
        if self.account is None:
            raise KrbApError(KRB_ERR_GENERIC, "no account for %s@%s" % (t_cname, t_crealm))
        if not getattr(self.account, "enabled", True):
            raise KrbApError(KRB_ERR_GENERIC, "account %s is disabled" % self.client_principal)

        ap_options = ap_req["ap-options"]
        mutual = bool(gss_flags & GSS_C_MUTUAL_FLAG)
        try:
            mutual = mutual or bool(ap_options[KC.APOptions.mutual_required.value])
        except IndexError:
            pass
        sub_etype = skey.enctype if skey.enctype in AES_ETYPES else 18
        self.acceptor_subkey = kcrypto.Key(sub_etype, os.urandom(32 if sub_etype == 18 else 16))
        self.send_seq = random.SystemRandom().getrandbits(31)
        self.session_key = self.acceptor_subkey.contents
        if not (mutual or self.dce_style):
            self.acceptor_subkey = None
            self.send_seq = self.recv_seq
            self.session_key = (self.initiator_subkey or skey).contents
            self._finish()
            return b""
        ap_rep = self._build_ap_rep(auth)
        if self.dce_style:
            self.state = "wait_ap_rep"
            return ap_rep
        self._finish()
        return gss_frame(TOK_AP_REP, ap_rep)

    def _build_ap_rep(self, auth) -> bytes:
        part = EncAPRepPart()
        part["ctime"] = str(auth["ctime"])
        part["cusec"] = int(auth["cusec"])
        part["subkey"] = noValue
        part["subkey"]["keytype"] = self.acceptor_subkey.enctype
        part["subkey"]["keyvalue"] = self.acceptor_subkey.contents
        part["seq-number"] = self.send_seq
        enc = _enc_profile(self.ticket_session_key.enctype).encrypt(self.ticket_session_key, 12,
                                                                    encoder.encode(part), None)
        rep = AP_REP()
        rep["pvno"] = 5
        rep["msg-type"] = 15
        rep["enc-part"] = noValue
        rep["enc-part"]["etype"] = self.ticket_session_key.enctype
        rep["enc-part"]["cipher"] = enc
        return encoder.encode(rep)

    def _accept_client_ap_rep(self, token: bytes) -> None:
        oid, tok_id, inner = gss_unframe(token)
        if oid is not None and tok_id != TOK_AP_REP:
            raise AuthError("expected the client's AP-REP")
        try:
            rep = decoder.decode(inner, asn1Spec=AP_REP())[0]
            plain = _enc_profile(self.ticket_session_key.enctype).decrypt(self.ticket_session_key, 12,
                                                                         rep["enc-part"]["cipher"].asOctets())
            part = decoder.decode(plain, asn1Spec=EncAPRepPart())[0]
        except Exception:
            self.failed = "client AP-REP does not decrypt"
            raise AuthError("DCE-style AP-REP from the client does not verify (KRB_AP_ERR_MUT_FAIL)")
        seq = int(part["seq-number"]) if part["seq-number"].isValue else None
        if seq is not None and seq != self.send_seq:
            self.failed = "client AP-REP with another sequence number"
            raise AuthError("DCE-style AP-REP carries sequence number %s, expected %d" % (seq, self.send_seq))
        self._finish()

    def _finish(self):
        self.complete = True
        self.state = "done"
        self.provider.log.info("Kerberos: %s authenticated for %s (%s, flags 0x%x)", self.client_principal,
                               self.sname, "DCE style" if self.dce_style else "GSS", self.gss_flags)

    # -- per-message ------------------------------------------------------------------------
    def _msg_key(self, flags: int) -> kcrypto.Key:
        if flags & FLAG_ACCEPTOR_SUBKEY:
            if self.acceptor_subkey is None:
                raise IntegrityError("token claims an acceptor subkey we did not send")
            return self.acceptor_subkey
        return self.initiator_subkey or self.ticket_session_key

    def _out_key(self) -> Tuple[kcrypto.Key, int]:
        if self.acceptor_subkey is not None:
            return self.acceptor_subkey, FLAG_SENT_BY_ACCEPTOR | FLAG_ACCEPTOR_SUBKEY
        return (self.initiator_subkey or self.ticket_session_key), FLAG_SENT_BY_ACCEPTOR

    def _check_key_type(self, key):
        if key.enctype not in AES_ETYPES:
            raise IntegrityError("per-message tokens with encryption type %d are not supported" % key.enctype)

    def verifier_size(self, level: int) -> int:
        if level == C.RPC_C_AUTHN_LEVEL_PKT_PRIVACY:
            return 16 + 16 + DCE_EC + 28     # header + confounder + filler + (header copy + checksum)
        return 28                     # MIC token

    def _split(self, message: bytes) -> Tuple[bytes, bytes, bytes]:
        hlen = _pdu_header_len(message)
        return message[:hlen], message[hlen:-8], message[-8:]

    def get_mic(self, data: bytes) -> bytes:
        """RFC 4121 MIC token over ``data`` (consumes a send sequence number)."""
        key, flags = self._out_key()
        self._check_key_type(key)
        head = struct.pack(">HB5s", 0x0404, flags, b"\xff" * 5) + struct.pack(">Q", self.send_seq)
        self.send_seq = (self.send_seq + 1) & 0xFFFFFFFFFFFFFFFF
        prof = kcrypto._checksum_table[16 if key.enctype == 18 else 15]
        return head + prof.checksum(key, KG_USAGE_ACCEPTOR_SIGN, data + head)

    def verify_mic(self, data: bytes, verifier: bytes) -> None:
        """Check the initiator's RFC 4121 MIC token over ``data`` (consumes a receive sequence number)."""
        if len(verifier) < 28 or verifier[:2] != b"\x04\x04":
            raise IntegrityError("not a Kerberos MIC token")
        flags = verifier[2]
        if flags & FLAG_SENT_BY_ACCEPTOR:
            raise IntegrityError("MIC token sent by the acceptor (reflection)")
        key = self._msg_key(flags)
        self._check_key_type(key)
        head = verifier[:16]
        seq = struct.unpack(">Q", head[8:16])[0]
        prof = kcrypto._checksum_table[16 if key.enctype == 18 else 15]
        if not hmac.compare_digest(prof.checksum(key, KG_USAGE_INITIATOR_SIGN, data + head), verifier[16:28]):
            raise IntegrityError("Kerberos MIC checksum mismatch")
        self._check_seq(seq)

    def sign(self, message: bytes) -> bytes:
        prefix, stub, suffix = self._split(message)
        return self.get_mic(message if self.connection_header_signing() else stub)

    def verify(self, message: bytes, verifier: bytes) -> None:
        prefix, stub, suffix = self._split(message)
        self.verify_mic(message if self.connection_header_signing() else stub, verifier)

    def _check_seq(self, seq: int) -> None:
        if seq != self.recv_seq:
            raise IntegrityError("Kerberos sequence number %d, expected %d" % (seq, self.recv_seq))
        self.recv_seq = (self.recv_seq + 1) & 0xFFFFFFFFFFFFFFFF

    def connection_header_signing(self) -> bool:
        conn = getattr(self, "connection", None)
        return bool(getattr(conn, "header_signing", False))

    def seal(self, prefix: bytes, plaintext: bytes, suffix: bytes) -> Tuple[bytes, bytes]:
        key, flags = self._out_key()
        self._check_key_type(key)
        flags |= FLAG_SEALED
        # EC 16 (a block of filler although the engine pads the stub to 16 bytes): what MIT krb5 and Windows use
        # in DCE style (verifier 76 bytes); MIT refuses EC 0 there, impacket accepts both
        ec = DCE_EC
        hdr0 = struct.pack(">HBBHH", 0x0504, flags, 0xFF, ec, 0) + struct.pack(">Q", self.send_seq)
        self.send_seq = (self.send_seq + 1) & 0xFFFFFFFFFFFFFFFF
        hs = self.connection_header_signing()
        conf, data, tail = aes_seal_iov(key, KG_USAGE_ACCEPTOR_SEAL, prefix if hs else b"", plaintext,
                                        suffix if hs else b"", b"\xff" * ec + hdr0)
        rrc = 28
        full = conf + data + tail                  # E(conf | data | filler | header) | checksum
        rotated = _rotate_right(full, rrc + ec)
        hdr = hdr0[:6] + struct.pack(">H", rrc) + hdr0[8:]
        cut = 16 + rrc + ec
        return rotated[cut:], hdr + rotated[:cut]

    def unseal(self, prefix: bytes, ciphertext: bytes, suffix: bytes, verifier: bytes) -> bytes:
        if len(verifier) < 16 + 16 + 28 or verifier[:2] != b"\x05\x04":
            raise IntegrityError("not a Kerberos wrap token")
        tok_id, flags, filler, ec, rrc = struct.unpack(">HBBHH", verifier[:8])
        seq = struct.unpack(">Q", verifier[8:16])[0]
        if filler != 0xFF:
            raise IntegrityError("bad wrap token filler")
        if flags & FLAG_SENT_BY_ACCEPTOR:
            raise IntegrityError("wrap token sent by the acceptor (reflection)")
        if not flags & FLAG_SEALED:
            raise IntegrityError("wrap token not sealed at packet privacy")
        key = self._msg_key(flags)
        self._check_key_type(key)
        rotated = verifier[16:] + ciphertext
        full = _rotate_left(rotated, rrc + ec)
        hs = self.connection_header_signing()
        data_len = len(full) - 16 - 12 - 16 - ec
        if data_len < 0:
            raise IntegrityError("wrap token too short")
        data, tail = aes_unseal_iov(key, KG_USAGE_INITIATOR_SEAL, prefix if hs else b"", full,
                                    suffix if hs else b"", data_len)
        hdr_copy = tail[ec:]
        if hdr_copy[:4] != verifier[:4] or hdr_copy[4:6] != verifier[4:6] or hdr_copy[8:16] != verifier[8:16]:
            raise IntegrityError("wrap token header copy differs")
        self._check_seq(seq)
        # the filler belongs to the GSS layer: the stub (with the RPC auth padding) is what was wrapped
        return data


class KerberosProvider(SecurityProvider):
    """RPC_C_AUTHN_GSS_KERBEROS (16) acceptor with the service account's keys."""

    auth_type = C.RPC_C_AUTHN_GSS_KERBEROS
    name = "kerberos"

    def __init__(self, identity, keytab: Optional[str] = None, keys: Optional[ServiceKeys] = None,
                 clock_skew: int = DEFAULT_CLOCK_SKEW, service_names=None, clock=None):
        super().__init__(identity)
        self.log = getattr(identity, "logger", None) or LOG
        if keys is None:
            path = keytab_path_for(getattr(identity, "accounts", None), keytab)
            if not path:
                raise ValueError("no keytab for the Kerberos provider (set %s or put %s next to the "
                                 "accounts file)" % (KEYTAB_ENV, seed.CA_KEYTAB))
            keys = ServiceKeys.from_keytab(path)
        self.keys = keys
        self.realm = (keys.realm or getattr(identity, "dns_domain", "")).upper()
        self.clock_skew = clock_skew
        self._clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        dns = (getattr(identity, "dns_computer", "") or "").lower()
        nb = (getattr(identity, "netbios_computer", "") or "").upper()
        names = set()
        for svc in ("HOST", "RPCSS", "RestrictedKrbHost"):
            for host in (dns, nb):
                if host:
                    names.add(("%s/%s" % (svc, host)).upper())
        if keys.principal:
            names.add(keys.principal.upper())
        if nb:
            names.add(("%s$" % nb).upper())
        names.update(n.upper() for n in (service_names or []))
        self.service_names = names
        self._replay: Dict[tuple, float] = {}
        self._lock = threading.Lock()

    def now(self) -> datetime.datetime:
        return self._clock()

    def accepts_service(self, sname: str) -> bool:
        return sname.upper() in self.service_names

    def remember(self, cname, crealm, ctime, cusec, sname) -> bool:
        key = (cname.upper(), crealm.upper(), ctime.isoformat(), cusec, sname.upper())
        now = time.time()
        with self._lock:
            for k in [k for k, t in self._replay.items() if now - t > 2 * self.clock_skew]:
                del self._replay[k]
            if key in self._replay:
                return False
            self._replay[key] = now
        return True

    def map_account(self, cname: str, crealm: str, pac: Optional[bytes]):
        accounts = getattr(self.identity, "accounts", None)
        acc = None
        if accounts is not None:
            acc = accounts.lookup(crealm, cname) or accounts.lookup("", "%s@%s" % (cname, crealm))
        if acc is not None:
            return acc
        sid, groups = pac_sids(pac) if pac else ("", [])
        if not sid:
            return None
        self.log.info("Kerberos: %s@%s is not in the account store; identity from the PAC (%s)", cname, crealm, sid)
        nb = getattr(self.identity, "netbios_domain", "") or crealm.split(".")[0]
        return Account(sam=cname, domain=nb.upper(), nt_hash=b"", sid=sid, group_sids=groups,
                       kind="computer" if cname.endswith("$") else "user")

    def krb_error_token(self, code: int) -> bytes:
        err = KRB_ERROR()
        err["pvno"] = 5
        err["msg-type"] = 30
        now = self.now()
        err["stime"] = KerberosTime.to_asn1(now)
        err["susec"] = now.microsecond
        err["error-code"] = code
        err["realm"] = self.realm
        err["sname"] = noValue
        err["sname"]["name-type"] = 2
        err["sname"]["name-string"][0] = "host"
        err["sname"]["name-string"][1] = (getattr(self.identity, "dns_computer", "") or "localhost").lower()
        return gss_frame(TOK_KRB_ERROR, encoder.encode(err))

    def new_context(self) -> SecurityContext:
        return KerberosContext(self)


# ---------------------------------------------------------------------------------------------------------
# SPNEGO (RFC 4178) around the Kerberos acceptor
# ---------------------------------------------------------------------------------------------------------
def _parse_neg_token_init(token: bytes) -> Tuple[List[bytes], Optional[bytes], bytes]:
    """(mechTypes as OID DERs, mechToken, the DER of the MechTypeList for the mechListMIC) of a GSS-framed
    NegTokenInit."""
    tag, off, length = _der_read(token, 0)
    if tag != 0x60:
        raise AuthError("SPNEGO token is not GSS framed")
    body = token[off:off + length]
    t, voff, vlen = _der_read(body, 0)
    if t != 0x06 or body[:voff + vlen] != SPNEGO_OID_DER:
        raise AuthError("not a SPNEGO token")
    rest = body[voff + vlen:]
    t, voff, vlen = _der_read(rest, 0)
    if t != 0xA0:
        raise AuthError("expected NegTokenInit")
    seq = rest[voff:voff + vlen]
    t, soff, slen = _der_read(seq, 0)
    if t != 0x30:
        raise AuthError("malformed NegTokenInit")
    items = seq[soff:soff + slen]
    mechs: List[bytes] = []
    mech_token = None
    mech_list_der = b""
    pos = 0
    while pos < len(items):
        t, voff, vlen = _der_read(items, pos)
        value = items[voff:voff + vlen]
        if t == 0xA0:
            t2, o2, l2 = _der_read(value, 0)
            mech_list_der = value[:o2 + l2]
            lst = value[o2:o2 + l2]
            p = 0
            while p < len(lst):
                t3, o3, l3 = _der_read(lst, p)
                mechs.append(lst[p:o3 + l3])
                p = o3 + l3
        elif t == 0xA2:
            t2, o2, l2 = _der_read(value, 0)
            mech_token = value[o2:o2 + l2]
        pos = voff + vlen
    return mechs, mech_token, mech_list_der


def _parse_neg_token_resp(token: bytes) -> Tuple[Optional[int], Optional[bytes], Optional[bytes]]:
    """(negState, responseToken, mechListMIC) of a NegTokenResp."""
    t, off, length = _der_read(token, 0)
    if t != 0xA1:
        raise AuthError("expected NegTokenResp")
    seq = token[off:off + length]
    t, soff, slen = _der_read(seq, 0)
    items = seq[soff:soff + slen]
    state, resp, mic = None, None, None
    pos = 0
    while pos < len(items):
        t, voff, vlen = _der_read(items, pos)
        value = items[voff:voff + vlen]
        if t == 0xA0:
            state = value[-1] if value else None
        elif t in (0xA2, 0xA3):
            _t2, o2, l2 = _der_read(value, 0)
            if t == 0xA2:
                resp = value[o2:o2 + l2]
            else:
                mic = value[o2:o2 + l2]
        pos = voff + vlen
    return state, resp, mic


def neg_token_resp(state: Optional[int], mech: Optional[bytes] = None, token: Optional[bytes] = None,
                   mic: Optional[bytes] = None) -> bytes:
    parts = b""
    if state is not None:
        parts += _tlv(0xA0, _tlv(0x0A, bytes([state])))
    if mech is not None:
        parts += _tlv(0xA1, mech)
    if token is not None:
        parts += _tlv(0xA2, _tlv(0x04, token))
    if mic is not None:
        parts += _tlv(0xA3, _tlv(0x04, mic))
    return _tlv(0xA1, _tlv(0x30, parts))


NEG_ACCEPT_COMPLETED, NEG_ACCEPT_INCOMPLETE, NEG_REJECT = 0, 1, 2
NTLMSSP_OID_DER = bytes.fromhex("060a2b06010401823702020a")    # 1.3.6.1.4.1.311.2.2.10


class SpnegoContext(SecurityContext):
    """RFC 4178 / MS-SPNG acceptor: picks the first offered mechanism it supports (Kerberos, or NTLM as Windows
    falls back to when the CA is addressed by IP), takes an optimistic token only for the client's first choice,
    and checks the initiator's mechListMIC (answering with its own), which consumes a sequence number of the
    inner context as on Windows; with NTLM the RC4 state is reset after each mechListMIC (MS-SPNG 3.3.5.1) and
    a mechListMIC is required when the AUTHENTICATE message carried an NTLM MIC."""

    auth_type = C.RPC_C_AUTHN_GSS_NEGOTIATE

    def __init__(self, provider: "SpnegoProvider"):
        super().__init__()
        self.provider = provider
        self.inner: Optional[SecurityContext] = None
        self.mech = KRB5_OID_DER
        self.mech_list_der = b""
        self.optimistic_ok = True

    def _sync(self):
        inner = self.inner
        self.user, self.domain, self.account = inner.user, inner.domain, inner.account
        self.session_key = inner.session_key
        if inner.failed:
            self.failed = inner.failed

    def _choose(self, mechs: List[bytes]) -> bytes:
        for mech in mechs:
            if mech in (MS_KRB5_OID_DER, KRB5_OID_DER) and self.provider.kerberos is not None:
                return mech
            if mech == NTLMSSP_OID_DER and self.provider.ntlm is not None:
                return mech
        raise AuthError("SPNEGO: none of the offered mechanisms is supported here")

    def _new_inner(self):
        if self.mech == NTLMSSP_OID_DER:
            inner = self.provider.ntlm.new_context()
        else:
            inner = self.provider.kerberos.new_context()
        inner.connection = getattr(self, "connection", None)
        return inner

    def _reply(self, result) -> AcceptResult:
        self._sync()
        if self.inner.failed:
            return AcceptResult(neg_token_resp(NEG_REJECT, None, result.reply_token or None), False)
        return AcceptResult(neg_token_resp(NEG_ACCEPT_INCOMPLETE, None, result.reply_token or None), False)

    def _finish(self, reply_token: bytes, client_mic: Optional[bytes]) -> AcceptResult:
        inner = self.inner
        ntlm_mech = self.mech == NTLMSSP_OID_DER
        if client_mic is None:
            if ntlm_mech and getattr(inner, "mic_present", False):
                self.failed = "SPNEGO: mechListMIC missing although the NTLM AUTHENTICATE carried a MIC"
                raise AuthError(self.failed)
            self.complete = True
            return AcceptResult(neg_token_resp(NEG_ACCEPT_COMPLETED, None, reply_token or None), True)
        try:
            inner.verify_mic(self.mech_list_der, client_mic)
        except IntegrityError as exc:
            self.failed = "SPNEGO mechListMIC does not verify: %s" % exc
            raise AuthError(self.failed)
        if ntlm_mech:
            inner.reset_rc4(inbound=True)
        mic = inner.get_mic(self.mech_list_der)
        if ntlm_mech:
            inner.reset_rc4(inbound=False)
        self.complete = True
        return AcceptResult(neg_token_resp(NEG_ACCEPT_COMPLETED, None, reply_token or None, mic), True)

    def accept(self, token: bytes) -> AcceptResult:
        if self.complete or self.failed:
            raise AuthError("SPNEGO context already finished")
        if self.inner is None:
            mechs, mech_token, self.mech_list_der = _parse_neg_token_init(token)
            if not mechs:
                raise AuthError("SPNEGO: NegTokenInit without mechanisms")
            self.mech = self._choose(mechs)
            self.inner = self._new_inner()
            if self.mech != mechs[0] or mech_token is None:
                # the optimistic token (if any) is for a mechanism we did not pick: ask for ours
                return AcceptResult(neg_token_resp(NEG_ACCEPT_INCOMPLETE, self.mech), False)
            result = self.inner.accept(mech_token)
            self._sync()
            if self.inner.failed:
                return AcceptResult(neg_token_resp(NEG_REJECT, None, result.reply_token), False)
            if result.done:
                self.complete = True
                return AcceptResult(neg_token_resp(NEG_ACCEPT_COMPLETED, self.mech, result.reply_token or None),
                                    True)
            return AcceptResult(neg_token_resp(NEG_ACCEPT_INCOMPLETE, self.mech, result.reply_token or None), False)
        _state, resp, mic = _parse_neg_token_resp(token)
        reply = b""
        if resp is not None:
            result = self.inner.accept(resp)
            self._sync()
            if not result.done:
                return self._reply(result)
            reply = result.reply_token
        elif not self.inner.complete:
            raise AuthError("SPNEGO: NegTokenResp without a response token")
        return self._finish(reply, mic)

    def verifier_size(self, level):
        return self.inner.verifier_size(level)

    def sign(self, message):
        return self.inner.sign(message)

    def verify(self, message, verifier):
        return self.inner.verify(message, verifier)

    def seal(self, prefix, plaintext, suffix):
        return self.inner.seal(prefix, plaintext, suffix)

    def unseal(self, prefix, ciphertext, suffix, verifier):
        return self.inner.unseal(prefix, ciphertext, suffix, verifier)


class SpnegoProvider(SecurityProvider):
    """RPC_C_AUTHN_GSS_NEGOTIATE (9): SPNEGO choosing Kerberos or NTLM (MS-WCCE 2.1 names Negotiate)."""

    auth_type = C.RPC_C_AUTHN_GSS_NEGOTIATE
    name = "negotiate"

    def __init__(self, identity, kerberos: Optional[KerberosProvider] = None, ntlm=None, **kwargs):
        super().__init__(identity)
        if kerberos is None and (kwargs or ntlm is None):
            kerberos = KerberosProvider(identity, **kwargs)
        self.kerberos = kerberos
        self.ntlm = ntlm

    def new_context(self) -> SecurityContext:
        return SpnegoContext(self)
