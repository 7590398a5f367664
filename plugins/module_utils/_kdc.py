# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The KDC wire exchange: one job, talking to a KDC: the AS exchange (a TGT), our own TGS exchange (a service ticket
for the CA), KDC lists, service principal names, and KRB-ERRORs turned into KerberosFailure.

The TGS exchange is our own: impacket's ``getKerberosTGS`` sends no authenticator checksum, which Heimdal (Samba
AD) refuses with KRB_AP_ERR_INAPP_CKSUM. Every KDC reply is read through a bounded exchange (``MAX_KDC_REPLY``),
including impacket's own AS exchange (``_with_timeout`` swaps its sendReceive). KDCs come from the options or from
``_dns.find_kdcs``. ``KerberosCredentials`` is what the exchanges produce (a TGT, or a ccache's tickets).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import random
import re
import socket
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET_KERBEROS
from ansible_collections.adcs.enrollment.plugins.module_utils import _dns
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput, KerberosFailure

if HAS_IMPACKET_KERBEROS:
    from impacket.krb5 import constants as krb_constants
    from impacket.krb5 import crypto as krb_crypto
    from impacket.krb5.asn1 import (
        AP_REQ, AS_REP, TGS_REP, TGS_REQ, Authenticator, EncTGSRepPart, KRB_ERROR, seq_set, seq_set_iter,
    )
    from impacket.krb5 import kerberosv5 as _impacket_krb5
    from impacket.krb5.kerberosv5 import KerberosError, getKerberosTGT
    from impacket.krb5.types import KerberosTime, Principal, Ticket
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type.univ import noValue
else:
    KerberosError = None
    _impacket_krb5 = None

DEFAULT_TIMEOUT = 10
KDC_PORT = 88

ETYPE_AES256 = 18
ETYPE_AES128 = 17
ETYPE_RC4 = 23
ETYPE_PREFERENCE = (ETYPE_AES256, ETYPE_AES128, ETYPE_RC4)
_ETYPE_NAMES = {ETYPE_AES256: 'aes256-cts-hmac-sha1-96', ETYPE_AES128: 'aes128-cts-hmac-sha1-96',
                ETYPE_RC4: 'rc4-hmac'}
# keyed checksum for the TGS-REQ authenticator (RFC 4120 7.2.2, key usage 6), by session key etype
_CKSUM_FOR_ETYPE = {ETYPE_AES256: 16, ETYPE_AES128: 15, ETYPE_RC4: -138}

_IPV4 = re.compile(r'^\d{1,3}(\.\d{1,3}){3}$')


# Kerberos error codes (RFC 4120 7.5.9) -> (summary, remedy)
KRB_ERROR_TEXT = {
    6: ('the KDC does not know the client principal',
        'Check the user or machine principal name and the realm (domain).'),
    7: ('the KDC does not know the service principal',
        'The CA must be named by the DNS name registered on its computer account (HOST/<fqdn>); use ca_host = '
        'the CA\'s DNS name and give its address separately when DNS differs.'),
    12: ('the KDC policy refused the request', 'Check the account restrictions (logon hours, workstations).'),
    14: ('no common encryption type with the KDC', 'Enable AES (or RC4) for the account.'),
    18: ('the client account is disabled, locked out or expired', 'Check the account in Active Directory.'),
    23: ('the password has expired', 'Change the password.'),
    24: ('pre-authentication failed: wrong password or key', 'Check the password, or re-export the keytab '
                                                             '(its key version may be out of date).'),
    25: ('the KDC requires pre-authentication', 'Use a password or keytab.'),
    31: ('the ticket integrity check failed', 'Retry; if it persists re-export the keytab of the service.'),
    32: ('the ticket has expired', 'Renew the ticket (kinit) or let the module get a fresh one.'),
    33: ('the ticket is not yet valid', 'Check the clock of this host.'),
    34: ('the request is a replay', 'Retry.'),
    37: ('clock skew too great between this host and the KDC or the CA',
         'Synchronise this host\'s clock with the domain (NTP from a domain controller); Kerberos allows 5 '
         'minutes.'),
    41: ('the ticket or authenticator was modified or was for another service (wrong key)',
         'Check that the service principal belongs to the CA\'s computer account.'),
    68: ('wrong realm', 'Use the realm of the account (domain in upper case).'),
}


def require_impacket():
    if not HAS_IMPACKET_KERBEROS:
        raise KerberosFailure('The Python library "impacket" is required for Kerberos',
                              remedy='Install impacket (>= 0.12) on the node that runs the module.')


def is_krb_error(exc):
    """True for impacket's KerberosError (a KRB-ERROR from the KDC or, in a bind_ack, from the CA)."""
    return KerberosError is not None and isinstance(exc, KerberosError)


def krb_error_code(exc):
    getter = getattr(exc, 'getErrorCode', None)
    if getter is None:
        return None
    try:
        return int(getter())
    except Exception:
        return None


def failure_from_krb_error(exc, step, principal=None, kdc=None, target=None):
    """A KerberosFailure for an impacket KerberosError (or a socket error) raised during ``step``."""
    if isinstance(exc, KerberosFailure):
        return exc
    code = krb_error_code(exc)
    where = [target] if target else []
    if principal:
        where.append('principal %s' % principal)
    if kdc:
        where.append('KDC %s' % kdc)
    suffix = (' (%s)' % ', '.join(where)) if where else ''
    if code is None:
        if isinstance(exc, (socket.timeout, socket.error, OSError)):
            return KerberosFailure('%s: cannot reach the KDC%s' % (step, suffix), detail=str(exc),
                                   remedy='Check that the KDC is reachable on TCP 88, or give it with the '
                                          'domain_controller / kdc option.')
        return KerberosFailure('%s failed%s' % (step, suffix), detail='%s: %s' % (type(exc).__name__, exc))
    text, remedy = KRB_ERROR_TEXT.get(code, (None, None))
    try:
        name = krb_constants.ErrorCodes(code).name
    except Exception:
        name = 'error %d' % code
    summary = '%s failed%s: %s' % (step, suffix, text or name)
    failure = KerberosFailure(summary, detail='%s (%d)' % (name, code), remedy=remedy)
    failure.krb_error_code = code     # callers decide on the code, never on the text
    return failure


# ---------------------------------------------------------------------------------------------------------------
# KDC discovery
# ---------------------------------------------------------------------------------------------------------------
def resolve_kdcs(realm, kdc=None, dns_server=None, timeout=DEFAULT_TIMEOUT):
    """[(host, port)] to try: the given KDC, else the SRV records of the realm."""
    if kdc:
        kdcs = kdc if isinstance(kdc, (list, tuple)) else [kdc]
        kdcs = [_dns.parse_host_port(k, KDC_PORT) if not isinstance(k, tuple) else k for k in kdcs]
    else:
        kdcs = _dns.find_kdcs(realm, dns_server=dns_server, timeout=timeout)
    # an unresolved name is left to the connection attempt, which reports it
    return [(_dns.resolve_host(host, dns_server, timeout), port) for host, port in kdcs]


# ---------------------------------------------------------------------------------------------------------------
# Service principal
# ---------------------------------------------------------------------------------------------------------------
def service_principal(ca_host, service='HOST', realm=None):
    """``HOST/<fqdn>`` for the CA named ``ca_host``; a bare host name is qualified with ``realm``'s DNS domain."""
    host = (ca_host or '').strip().rstrip('.')
    if not host:
        raise InvalidInput('Kerberos needs the CA\'s DNS name (ca_host) to name its service principal')
    if _IPV4.match(host) or ':' in host:
        raise InvalidInput('Kerberos needs the CA\'s DNS name, not the address %s: its service ticket is for '
                           'HOST/<dns name>. Set ca_host to the DNS name and give the address separately.' % host)
    if '.' not in host and realm:
        host = '%s.%s' % (host, realm.lower())
    return '%s/%s' % (service, host.lower())


class KerberosCredentials(object):
    """A TGT (and possibly a service ticket from a ccache) for one client principal."""

    def __init__(self, user, realm, tgt=None, source='password', kdc=None, service_tickets=None):
        self.user = user
        self.realm = realm.upper()
        self.tgt = tgt                    # impacket dict or None (ccache with service tickets only)
        self.source = source
        self.kdc = kdc                    # (host, port) that answered
        self.service_tickets = dict(service_tickets or {})   # upper-case SPN -> impacket TGS dict

    @property
    def principal(self):
        return '%s@%s' % (self.user, self.realm)

    def __repr__(self):
        return 'KerberosCredentials(%s, source=%s)' % (self.principal, self.source)


def _key_for(etype, value):
    return krb_crypto.Key(etype, value)


def _with_timeout(timeout, func, *args, **kwargs):
    """func under a default socket timeout, with impacket's KDC exchange replaced by our bounded one."""
    old = socket.getdefaulttimeout()
    old_send = getattr(_impacket_krb5, 'sendReceive', None)
    socket.setdefaulttimeout(timeout)
    if old_send is not None:
        _impacket_krb5.sendReceive = _bounded_impacket_send_receive
    try:
        return func(*args, **kwargs)
    finally:
        socket.setdefaulttimeout(old)
        if old_send is not None:
            _impacket_krb5.sendReceive = old_send


def as_exchange(user, realm, kdcs, password='', nt_hash='', aes_key='', timeout=DEFAULT_TIMEOUT):
    """AS exchange over the KDCs in turn; returns (tgt dict, kdc)."""
    principal = Principal(user, type=krb_constants.PrincipalNameType.NT_PRINCIPAL.value)
    last = None
    for host, port in kdcs:
        if port != KDC_PORT:
            last = KerberosFailure('KDC %s:%d: only port 88 is supported for the AS exchange' % (host, port))
            continue
        try:
            tgt, cipher, client_key, session_key = _with_timeout(timeout, getKerberosTGT, principal, password,
                                                                 realm, '', nt_hash, aes_key, host)
        except Exception as exc:
            if krb_error_code(exc) is not None:
                raise failure_from_krb_error(exc, 'Getting a ticket-granting ticket', '%s@%s' % (user, realm),
                                             '%s:%d' % (host, port))
            last = failure_from_krb_error(exc, 'Getting a ticket-granting ticket', '%s@%s' % (user, realm),
                                          '%s:%d' % (host, port))
            continue
        return {'KDC_REP': tgt, 'cipher': cipher, 'sessionKey': session_key, 'replyKey': (client_key, 3)}, (host, port)
    raise last or KerberosFailure('No KDC to ask for realm %s' % realm)


# ---------------------------------------------------------------------------------------------------------------
# TGS exchange (own: with the authenticator checksum Heimdal requires)
# ---------------------------------------------------------------------------------------------------------------
MAX_KDC_REPLY = 1024 * 1024     # bytes; a Windows KDC reply (tickets with a large PAC) stays far below


def _kdc_exchange(message, host, port, timeout):
    """One KDC exchange over TCP (RFC 4120 7.2.2): the raw reply, its length bounded by ``MAX_KDC_REPLY``."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as every client socket of the collection
        sock.sendall(struct.pack('!I', len(message)) + message)
        head = b''
        while len(head) < 4:
            chunk = sock.recv(4 - len(head))
            if not chunk:
                raise socket.error('the KDC closed the connection')
            head += chunk
        length = struct.unpack('!I', head)[0]
        if length & 0x80000000 or length > MAX_KDC_REPLY:
            raise KerberosFailure('The KDC at %s:%d announced a reply of %d bytes, more than the %d bytes allowed'
                                  % (host, port, length, MAX_KDC_REPLY),
                                  remedy='Check that %s:%d is a Kerberos KDC (a domain controller) and that '
                                         'nothing on the path alters the traffic.' % (host, port))
        chunks = []
        got = 0
        while got < length:
            chunk = sock.recv(min(65536, length - got))
            if not chunk:
                raise socket.error('the KDC closed the connection')
            chunks.append(chunk)
            got += len(chunk)
        return b''.join(chunks)
    finally:
        sock.close()


def _krb_error(data):
    try:
        return KerberosError(packet=decoder.decode(data, asn1Spec=KRB_ERROR())[0])
    except Exception:
        return None


def _send_receive(message, host, port, timeout):
    """A bounded KDC exchange; a KRB-ERROR reply raises impacket's KerberosError."""
    data = _kdc_exchange(message, host, port, timeout)
    err = _krb_error(data)
    if err is not None:
        raise err
    return data


def _bounded_impacket_send_receive(data, host, kdc_host, port=KDC_PORT):
    """Stands in for impacket's ``kerberosv5.sendReceive`` (unbounded, loops on an early close) during our AS
    exchange, with its contract: the reply, or KerberosError for a KRB-ERROR other than KDC_ERR_PREAUTH_REQUIRED
    (returned as is: getKerberosTGT reads the salts from it)."""
    reply = _kdc_exchange(data, kdc_host or host, port, socket.getdefaulttimeout() or DEFAULT_TIMEOUT)
    err = _krb_error(reply)
    if err is not None and err.getErrorCode() != krb_constants.ErrorCodes.KDC_ERR_PREAUTH_REQUIRED.value:
        raise err
    return reply


def _inner_der(der):
    """The value inside an explicit context tag ([4] req-body -> the KDC-REQ-BODY SEQUENCE the KDC checksums)."""
    if not der or der[0] & 0xE0 != 0xA0:
        return der
    first = der[1]
    if first < 0x80:
        return der[2:2 + first]
    n = first & 0x7F
    length = int.from_bytes(der[2:2 + n], 'big')
    return der[2 + n:2 + n + length]


def _enctype(cipher):
    return int(cipher.enctype)


def build_tgs_req(tgt, spn, realm, now=None):
    """The encoded TGS-REQ for ``spn`` with the TGT dict; the authenticator carries a keyed checksum of the body."""
    try:
        decoded = decoder.decode(tgt['KDC_REP'], asn1Spec=AS_REP())[0]
    except Exception:
        decoded = decoder.decode(tgt['KDC_REP'], asn1Spec=TGS_REP())[0]
    cipher, session_key = tgt['cipher'], tgt['sessionKey']
    ticket = Ticket()
    ticket.from_asn1(decoded['ticket'])
    client = Principal()
    client.from_asn1(decoded, 'crealm', 'cname')
    now = now or datetime.datetime.now(datetime.timezone.utc)

    tgs_req = TGS_REQ()
    tgs_req['pvno'] = 5
    tgs_req['msg-type'] = int(krb_constants.ApplicationTagNumbers.TGS_REQ.value)
    body = seq_set(tgs_req, 'req-body')
    # canonicalize only: forwardable/renewable from a TGT without those flags (kinit's default) is
    # KDC_ERR_BADOPTION with Heimdal, and the CA needs neither
    body['kdc-options'] = krb_constants.encodeFlags([krb_constants.KDCOptions.canonicalize.value])
    server = Principal(spn, type=krb_constants.PrincipalNameType.NT_SRV_INST.value)
    seq_set(body, 'sname', server.components_to_asn1)
    body['realm'] = realm.upper()
    body['till'] = KerberosTime.to_asn1(now + datetime.timedelta(days=1))
    body['nonce'] = random.SystemRandom().getrandbits(31)
    seq_set_iter(body, 'etype', (ETYPE_AES256, ETYPE_AES128, ETYPE_RC4))
    body_der = _inner_der(encoder.encode(body))

    etype = _enctype(cipher)
    cksum_type = _CKSUM_FOR_ETYPE.get(etype)
    if cksum_type is None:
        raise KerberosFailure('The TGT uses encryption type %d, which is not supported' % etype)
    checksum = krb_crypto._checksum_table[cksum_type].checksum(session_key, 6, body_der)

    authenticator = Authenticator()
    authenticator['authenticator-vno'] = 5
    authenticator['crealm'] = str(decoded['crealm'])
    seq_set(authenticator, 'cname', client.components_to_asn1)
    authenticator['cksum'] = noValue
    authenticator['cksum']['cksumtype'] = cksum_type
    authenticator['cksum']['checksum'] = checksum
    authenticator['cusec'] = now.microsecond
    authenticator['ctime'] = KerberosTime.to_asn1(now)
    enc_auth = cipher.encrypt(session_key, 7, encoder.encode(authenticator), None)

    ap_req = AP_REQ()
    ap_req['pvno'] = 5
    ap_req['msg-type'] = int(krb_constants.ApplicationTagNumbers.AP_REQ.value)
    ap_req['ap-options'] = krb_constants.encodeFlags([])
    seq_set(ap_req, 'ticket', ticket.to_asn1)
    ap_req['authenticator'] = noValue
    ap_req['authenticator']['etype'] = etype
    ap_req['authenticator']['cipher'] = enc_auth

    tgs_req['padata'] = noValue
    tgs_req['padata'][0] = noValue
    tgs_req['padata'][0]['padata-type'] = int(krb_constants.PreAuthenticationDataTypes.PA_TGS_REQ.value)
    tgs_req['padata'][0]['padata-value'] = encoder.encode(ap_req)
    tgs_req['req-body'] = body
    return encoder.encode(tgs_req)


def parse_tgs_rep(data, tgt):
    """impacket TGS dict from a TGS-REP (decrypted with the TGT session key)."""
    rep = decoder.decode(data, asn1Spec=TGS_REP())[0]
    plain = tgt['cipher'].decrypt(tgt['sessionKey'], 8, rep['enc-part']['cipher'])
    enc = decoder.decode(plain, asn1Spec=EncTGSRepPart())[0]
    etype = int(enc['key']['keytype'])
    cipher = krb_crypto._enctype_table[etype]()
    return {'KDC_REP': data, 'cipher': cipher, 'sessionKey': _key_for(etype, enc['key']['keyvalue'].asOctets()),
            'replyKey': (tgt['sessionKey'], 8)}


def get_service_ticket(creds, spn, kdc=None, dns_server=None, timeout=DEFAULT_TIMEOUT):
    """impacket TGS dict for ``spn`` (from the ccache if it holds one, else a TGS exchange with the TGT)."""
    require_impacket()
    cached = creds.service_tickets.get(spn.upper())
    if cached is not None:
        return cached
    if creds.tgt is None:
        raise KerberosFailure('The credential cache holds no ticket-granting ticket and no ticket for %s' % spn,
                              remedy='Run kinit again, or give a password or keytab.')
    kdcs = [creds.kdc] if (creds.kdc and not kdc) else resolve_kdcs(creds.realm, kdc, dns_server, timeout)
    last = None
    for host, port in kdcs:
        try:
            message = build_tgs_req(creds.tgt, spn, creds.realm)
            return parse_tgs_rep(_send_receive(message, host, port, timeout), creds.tgt)
        except Exception as exc:
            err = failure_from_krb_error(exc, 'Getting a service ticket for %s' % spn, creds.principal,
                                         '%s:%d' % (host, port))
            if krb_error_code(exc) is not None:
                raise err
            last = err
    raise last or KerberosFailure('No KDC to ask for realm %s' % creds.realm)


def ca_service_ticket(creds, ca_host, kdc=None, dns_server=None, spn=None, timeout=DEFAULT_TIMEOUT):
    """(spn, TGS dict) for the CA: ``spn`` if given, else HOST/<fqdn>, then RPCSS/<fqdn> if HOST is unknown."""
    candidates = [spn] if spn else [service_principal(ca_host, 'HOST', creds.realm),
                                    service_principal(ca_host, 'RPCSS', creds.realm)]
    first_error = None
    for name in candidates:
        try:
            return name, get_service_ticket(creds, name, kdc, dns_server, timeout)
        except KerberosFailure as exc:
            if getattr(exc, 'krb_error_code', None) != 7:   # KDC_ERR_S_PRINCIPAL_UNKNOWN: try RPCSS/<fqdn>
                raise
            first_error = first_error or exc
    raise first_error
