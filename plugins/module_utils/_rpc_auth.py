# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client security contexts of the DCE/RPC connection: one job, build the handshake tokens and protect/verify PDUs.

Packages (``rpc_auth_package``): ``negotiate`` = RPC_C_AUTHN_GSS_NEGOTIATE (9, SPNEGO, RFC 4178 / MS-SPNG) with
Kerberos or NTLM inside and a mechListMIC as Windows sends it; ``ntlm`` = RPC_C_AUTHN_WINNT (10);
``kerberos`` = RPC_C_AUTHN_GSS_KERBEROS (16). Handshakes (DCE style, MS-RPCE 3.3.1.5.2):

* NTLM: bind(NEGOTIATE) -> bind_ack(CHALLENGE) -> auth3(AUTHENTICATE); in SPNEGO the AUTHENTICATE goes in an
  alter_context with the mechListMIC and the alter_context_resp carries the server's, which is checked (the RC4
  streams restart after each mechListMIC, MS-SPNG 3.3.5.1). The AUTHENTICATE carries an NTLM MIC (MsvAvFlags 0x2)
  as Windows builds it. NTLMv2 with extended session security, key exchange, 128-bit sealing: the messages and
  keys are ``_ntlm``'s (standard library and cryptography; impacket is never imported on the NTLM path).
* Kerberos: bind(AP-REQ, GSS_C_DCE_STYLE) -> bind_ack(AP-REP with the acceptor subkey and sequence number) ->
  auth3 (raw) or alter_context (SPNEGO, with the mechListMIC, a MIC token that takes sequence number 0) carrying
  our AP-REP (impacket's Kerberos code, imported when a Kerberos context starts). Per-message tokens are RFC 4121
  AES tokens with the acceptor subkey (RC4 session keys raise ``Unsupported``). With header signing the PDU header
  and sec_trailer are SIGN_ONLY buffers of the wrap token (HMAC over confounder | header | stub | sec_trailer |
  filler | token header, MS-KILE 3.4.5.4.1).

Every protect/verify method takes the PDU parts (``prefix`` = header, ``data`` = stub + auth pad, ``suffix`` =
sec_trailer) and whether header signing is in force; verify methods raise ``BadVerifier(cause)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import hmac
import os
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils import _ntlm

AUTHN_NEGOTIATE, AUTHN_WINNT, AUTHN_KERBEROS = 9, 10, 16
PACKAGES = {'negotiate': AUTHN_NEGOTIATE, 'ntlm': AUTHN_WINNT, 'kerberos': AUTHN_KERBEROS}
LEVEL_PRIVACY = 6

OID_SPNEGO = b'\x06\x06\x2b\x06\x01\x05\x05\x02'
OID_MS_KRB5 = b'\x06\x09\x2a\x86\x48\x82\xf7\x12\x01\x02\x02'
OID_KRB5 = b'\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02'
OID_NTLM = b'\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a'

KG_ACCEPTOR_SEAL, KG_ACCEPTOR_SIGN, KG_INITIATOR_SEAL, KG_INITIATOR_SIGN = 22, 23, 24, 25
FLAG_SENT_BY_ACCEPTOR, FLAG_SEALED, FLAG_ACCEPTOR_SUBKEY = 0x01, 0x02, 0x04
DCE_EC, DCE_RRC = 16, 28


class BadVerifier(Exception):
    """A verifier or handshake token of the server that does not check (the cause is the message)."""


class Unsupported(Exception):
    """A security setting this client does not implement (e.g. an RC4 Kerberos session key)."""


class Rejected(Exception):
    """The server refused the authentication (SPNEGO negState reject without a mechanism error to say why)."""


# -- DER / SPNEGO ---------------------------------------------------------------------------------------------------
def der(tag, content):
    n = len(content)
    if n < 0x80:
        size = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, 'big')
        size = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + size + content


def der_items(data):
    """[(tag, value)] of consecutive TLVs (short or long lengths)."""
    out, off = [], 0
    while off + 2 <= len(data):
        tag, length = data[off], data[off + 1]
        off += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[off:off + count], 'big')
            off += count
        if off + length > len(data):
            raise BadVerifier('a truncated SPNEGO token')
        out.append((tag, data[off:off + length]))
        off += length
    return out


def neg_token_init(mech_oids, mech_token):
    """(GSS-framed NegTokenInit, DER of its MechTypeList: what the mechListMIC covers)."""
    mech_list = der(0x30, b''.join(mech_oids))
    body = der(0x30, der(0xA0, mech_list) + der(0xA2, der(0x04, mech_token)))
    return der(0x60, OID_SPNEGO + der(0xA0, body)), mech_list


def neg_token_resp(response=None, mic=None):
    body = b''
    if response is not None:
        body += der(0xA2, der(0x04, response))
    if mic is not None:
        body += der(0xA3, der(0x04, mic))
    return der(0xA1, der(0x30, body))


def parse_neg_token_resp(token):
    """(negState or None, responseToken or None, mechListMIC or None) of a NegTokenResp."""
    try:
        (tag, outer), = der_items(token)
        (seq_tag, seq), = der_items(outer)
        fields = dict(der_items(seq))
    except (ValueError, IndexError):
        raise BadVerifier('the CA sent a malformed SPNEGO token')
    if tag != 0xA1 or seq_tag != 0x30:
        raise BadVerifier('the CA sent no SPNEGO NegTokenResp')
    state = fields[0xA0][-1] if 0xA0 in fields else None
    values = []
    for key in (0xA2, 0xA3):
        values.append(der_items(fields[key])[0][1] if key in fields else None)
    if state == 2 and not values[0]:
        raise Rejected('the CA rejected the SPNEGO negotiation (negState reject)')
    # a reject with a responseToken carries the mechanism's error (a KRB-ERROR): the mechanism raises it
    return state, values[0], values[1]


def inner_token(server_token, spnego, what):
    """The mechanism token of the CA's answer (inside its NegTokenResp with SPNEGO); BadVerifier when absent."""
    token = parse_neg_token_resp(server_token)[1] if spnego else server_token
    if not token:
        raise BadVerifier('the CA sent no %s' % what)
    return token


def server_mic(server_token):
    """The CA's mechListMIC from the last NegTokenResp; BadVerifier when absent."""
    mic = parse_neg_token_resp(server_token)[2]
    if mic is None:
        raise BadVerifier('the CA sent no SPNEGO mechListMIC')
    return mic


# -- NTLM -----------------------------------------------------------------------------------------------------------
class NtlmContext(object):
    """NTLMv2 initiator (raw or inside SPNEGO) over ``_ntlm``'s client; its failures become BadVerifier/Unsupported."""

    kerberos = False

    def __init__(self, user, password, domain, nthash=b'', spnego=True, target_name=None):
        # an empty NT hash ('' or b'') means the password's: impacket once took b'' for a hash (the nthash=b'' pitfall)
        self.nthash = nthash or b''
        self.client = _ntlm.NtlmClient(user, domain, password or '', self.nthash or None,
                                       target_name='HOST/%s' % target_name if target_name else None)
        self.auth_type = AUTHN_NEGOTIATE if spnego else AUTHN_WINNT
        self.spnego = spnego
        self.mech_list = b''
        self.complete = False
        self.session = None

    @property
    def in_seq(self):
        return self.session.in_seq

    @property
    def out_seq(self):
        return self.session.out_seq

    def first_token(self):
        negotiate = self.client.negotiate()
        if not self.spnego:
            return negotiate
        token, self.mech_list = neg_token_init([OID_NTLM], negotiate)
        return token

    def step(self, server_token):
        """The answer to the bind_ack's token: (token, 'auth3' | 'alter')."""
        challenge = inner_token(server_token, self.spnego, 'NTLM challenge')
        try:
            authenticate = self.client.authenticate(challenge)
        except _ntlm.NtlmUnsupported as exc:
            raise Unsupported(str(exc))
        except _ntlm.NtlmError as exc:
            raise BadVerifier(str(exc))
        self.session = self.client.session
        if not self.spnego:
            self.complete = True
            return authenticate, 'auth3'
        mic = self.sign_raw(self.mech_list)
        self.session.restart_outbound()          # MS-SPNG 3.3.5.1: RC4 restarts after the mechListMIC
        return neg_token_resp(authenticate, mic), 'alter'

    def finish(self, server_token):
        """The alter_context_resp of the SPNEGO exchange: the server's mechListMIC must verify."""
        self.verify_raw(self.mech_list, server_mic(server_token))
        self.session.restart_inbound()
        self.complete = True

    def sign_raw(self, message):
        return self.session.sign(message)

    def verify_raw(self, message, verifier):
        try:
            self.session.verify(message, verifier)
        except _ntlm.NtlmError as exc:
            raise BadVerifier(str(exc))

    def verifier_size(self, level):
        return 16

    def protect(self, prefix, data, suffix, level, header_sign):
        """(stub to send, verifier). NTLM always signs header + stub + sec_trailer."""
        body = self.session.seal(data) if level == LEVEL_PRIVACY else data
        return body, self.sign_raw(prefix + data + suffix)

    def unprotect(self, prefix, body, suffix, verifier, level, header_sign):
        plain = self.session.unseal(body) if level == LEVEL_PRIVACY else body
        self.verify_raw(prefix + plain + suffix, verifier)
        return plain


# -- Kerberos -------------------------------------------------------------------------------------------------------
def _hmac_sha1_96(key, data):
    return hmac.new(key.contents, data, hashlib.sha1).digest()[:12]


def aes_seal(profile, key, usage, before, data, after, tail):
    """RFC 3961 encryption with SIGN_ONLY buffers: (ciphertext of confounder | data | tail) + HMAC over
    confounder | before | data | after | tail."""
    ki = profile.derive(key, struct.pack('>IB', usage, 0x55))
    ke = profile.derive(key, struct.pack('>IB', usage, 0xAA))
    conf = os.urandom(16)
    return profile.basic_encrypt(ke, conf + data + tail) + _hmac_sha1_96(ki, conf + before + data + after + tail)


def aes_unseal(profile, key, usage, before, sealed, after, data_len):
    """Inverse of aes_seal: (data, tail) or BadVerifier."""
    if len(sealed) < 16 + 12 + data_len:
        raise BadVerifier('Kerberos wrap token too short')
    ki = profile.derive(key, struct.pack('>IB', usage, 0x55))
    ke = profile.derive(key, struct.pack('>IB', usage, 0xAA))
    plain = profile.basic_decrypt(ke, sealed[:-12])
    conf, data, tail = plain[:16], plain[16:16 + data_len], plain[16 + data_len:]
    if not hmac.compare_digest(_hmac_sha1_96(ki, conf + before + data + after + tail), sealed[-12:]):
        raise BadVerifier('Kerberos wrap token checksum mismatch')
    return data, tail


def _rotate(data, count):
    """Rotate left by count (RFC 4121 4.2.5 RRC handling)."""
    if not data:
        return data
    count %= len(data)
    return data[count:] + data[:count]


class KerberosContext(object):
    """DCE-style Kerberos initiator (raw or inside SPNEGO) from impacket's AP-REQ builder and the TGS of ``_auth``."""

    kerberos = True

    def __init__(self, creds, target_name, spnego=True):
        self.creds, self.target_name, self.spnego = creds, target_name, spnego
        self.auth_type = AUTHN_NEGOTIATE if spnego else AUTHN_KERBEROS
        self.mech_list = b''
        self.out_seq = 0
        self.in_seq = None
        self.complete = False
        self.key = None

    def first_token(self):
        from impacket.krb5 import kerberosv5
        from impacket.spnego import SPNEGO_NegTokenInit
        c = self.creds
        self._cipher, self._session_key, blob = kerberosv5.getKerberosType1(
            c['username'], c.get('password', ''), c.get('domain', ''), c.get('lmhash', ''), c.get('nthash', ''),
            c.get('aesKey', ''), c.get('TGT'), c.get('TGS'), self.target_name, c.get('kdcHost'))
        ap_req = SPNEGO_NegTokenInit(blob)['MechToken']
        if not self.spnego:
            return ap_req
        token, self.mech_list = neg_token_init([OID_MS_KRB5, OID_KRB5, OID_NTLM], ap_req)
        return token

    def step(self, server_token):
        from impacket.krb5.asn1 import AP_REP, EncAPRepPart
        from impacket.krb5.crypto import Key, _enctype_table, _checksum_table
        from impacket.krb5.types import KerberosTime
        from pyasn1.codec.der import decoder, encoder
        rep_token = inner_token(server_token, self.spnego, 'Kerberos AP-REP')
        if rep_token[:1] == b'\x60':     # GSS framed: [APPLICATION 0] OID + 2-byte token id
            inner = der_items(rep_token)[0][1]
            rep_token = inner[len(OID_KRB5) + 2:]
        try:
            ap_rep = decoder.decode(rep_token, asn1Spec=AP_REP())[0]
        except Exception:
            from impacket.krb5.asn1 import KRB_ERROR
            from impacket.krb5.kerberosv5 import KerberosError
            try:
                krb_error = decoder.decode(rep_token, asn1Spec=KRB_ERROR())[0]
            except Exception:
                raise BadVerifier('the CA answered the AP-REQ with neither an AP-REP nor a Kerberos error')
            raise KerberosError(packet=krb_error)     # e.g. KRB_AP_ERR_SKEW: reported as the KDC's errors are
        try:
            plain = self._cipher.decrypt(self._session_key, 12, ap_rep['enc-part']['cipher'].asOctets())
        except Exception:
            raise BadVerifier('the CA\'s AP-REP does not decrypt (KRB_AP_ERR_MUT_FAIL)')
        part = decoder.decode(plain, asn1Spec=EncAPRepPart())[0]
        if not part['subkey'].isValue:
            raise Unsupported('a Kerberos AP-REP without an acceptor subkey')
        etype = int(part['subkey']['keytype'])
        if etype not in (17, 18):
            raise Unsupported('Kerberos per-message tokens with encryption type %d' % etype)
        self.profile = _enctype_table[etype]
        self.checksum = _checksum_table[16 if etype == 18 else 15]
        self.key = Key(etype, part['subkey']['keyvalue'].asOctets())
        self.in_seq = int(part['seq-number']) if part['seq-number'].isValue else 0
        part['subkey'].clear()
        reply = part.clone()
        now = datetime.datetime.now(datetime.timezone.utc)
        reply['cusec'] = now.microsecond
        reply['ctime'] = KerberosTime.to_asn1(now)
        reply['seq-number'] = self.in_seq
        ap_rep['enc-part'].clear()
        ap_rep['enc-part']['etype'] = self._cipher.enctype
        ap_rep['enc-part']['cipher'] = self._cipher.encrypt(self._session_key, 12, encoder.encode(reply), None)
        ours = encoder.encode(ap_rep)
        if not self.spnego:
            self.complete = True
            return ours, 'auth3'
        return neg_token_resp(ours, self.get_mic(self.mech_list)), 'alter'

    def finish(self, server_token):
        self.verify_mic(self.mech_list, server_mic(server_token))
        self.complete = True

    def _next_out(self):
        seq = self.out_seq
        self.out_seq = (seq + 1) & 0xFFFFFFFFFFFFFFFF
        return seq

    def get_mic(self, data):
        head = struct.pack('>HB5sQ', 0x0404, FLAG_ACCEPTOR_SUBKEY, b'\xff' * 5, self._next_out())
        return head + self.checksum.checksum(self.key, KG_INITIATOR_SIGN, data + head)

    def verify_mic(self, data, verifier):
        if len(verifier) < 28 or verifier[:2] != b'\x04\x04':
            raise BadVerifier('not a Kerberos MIC token')
        if not verifier[2] & FLAG_SENT_BY_ACCEPTOR:
            raise BadVerifier('Kerberos MIC token not sent by the CA (acceptor flag unset): a reflected request')
        head = verifier[:16]
        seq = struct.unpack('>Q', head[8:])[0]
        expected = self.checksum.checksum(self.key, KG_ACCEPTOR_SIGN, data + head)
        if not hmac.compare_digest(expected, verifier[16:28]):
            raise BadVerifier('Kerberos MIC checksum mismatch, sequence %d' % seq)
        self._check_seq(seq)

    def _check_seq(self, seq):
        if seq != self.in_seq:
            raise BadVerifier('Kerberos sequence %d, expected %d: out of sequence or replayed' % (seq, self.in_seq))
        self.in_seq = (seq + 1) & 0xFFFFFFFFFFFFFFFF

    def verifier_size(self, level):
        return 16 + 16 + DCE_EC + 28 if level == LEVEL_PRIVACY else 28

    def protect(self, prefix, data, suffix, level, header_sign):
        if level != LEVEL_PRIVACY:
            return data, self.get_mic(prefix + data + suffix if header_sign else data)
        head = struct.pack('>HBBHHQ', 0x0504, FLAG_SEALED | FLAG_ACCEPTOR_SUBKEY, 0xFF, DCE_EC, 0, self._next_out())
        sealed = aes_seal(self.profile, self.key, KG_INITIATOR_SEAL, prefix if header_sign else b'', data,
                          suffix if header_sign else b'', b'\xff' * DCE_EC + head)
        rotated = _rotate(sealed, len(sealed) - (DCE_RRC + DCE_EC))       # right by RRC + EC
        cut = 16 + DCE_RRC + DCE_EC
        return rotated[cut:], head[:6] + struct.pack('>H', DCE_RRC) + head[8:] + rotated[:cut]

    def unprotect(self, prefix, body, suffix, verifier, level, header_sign):
        if level != LEVEL_PRIVACY:
            self.verify_mic(prefix + body + suffix if header_sign else body, verifier)
            return body
        if len(verifier) < 16 or verifier[:2] != b'\x05\x04' or verifier[3:4] != b'\xff':
            raise BadVerifier('not a Kerberos wrap token')
        _tok, flags, _f, ec, rrc, seq = struct.unpack('>HBBHHQ', verifier[:16])
        if not flags & FLAG_SENT_BY_ACCEPTOR:
            raise BadVerifier('Kerberos wrap token not sent by the CA (acceptor flag unset): a reflected request')
        if not flags & FLAG_SEALED:
            raise BadVerifier('Kerberos wrap token not sealed in a packet-privacy session')
        sealed = _rotate(verifier[16:] + body, rrc + ec)
        data_len = len(sealed) - 16 - 12 - 16 - ec
        if data_len < 0:
            raise BadVerifier('Kerberos wrap token too short')
        try:
            data, tail = aes_unseal(self.profile, self.key, KG_ACCEPTOR_SEAL, prefix if header_sign else b'', sealed,
                                    suffix if header_sign else b'', data_len)
        except BadVerifier as exc:
            raise BadVerifier('%s, sequence %d' % (exc, seq))
        copy = tail[ec:]
        if copy[:6] != verifier[:6] or copy[8:16] != verifier[8:16]:
            raise BadVerifier('Kerberos wrap token header does not match its encrypted copy')
        self._check_seq(seq)
        return data


def security_context(package, creds, target_name):
    """The initiator for ``package`` (negotiate|ntlm|kerberos) and the impacket-style credential dict of ``_auth``."""
    if package not in PACKAGES:
        raise Unsupported('RPC authentication package %r' % package)
    if creds.get('doKerberos'):
        if package == 'ntlm':
            raise Unsupported('NTLM with Kerberos credentials')
        return KerberosContext(creds, target_name, spnego=package == 'negotiate')
    if package == 'kerberos':
        raise Unsupported('Kerberos without Kerberos credentials')
    nthash = creds.get('nthash') or ''
    if nthash and not isinstance(nthash, bytes):
        nthash = bytes.fromhex(nthash)
    return NtlmContext(creds.get('username'), creds.get('password'), creds.get('domain'), nthash,
                       spnego=package == 'negotiate', target_name=target_name)
