# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kerberos for the DCOM transport: credentials and the CA's service ticket.

One job: turn the user's Kerberos options into what impacket's DCE/RPC client needs for
RPC_C_AUTHN_GSS_NEGOTIATE (9) at packet privacy: a TGT and a service ticket for the CA, as the
``TGT=``/``TGS=`` dictionaries ``{'KDC_REP', 'cipher', 'sessionKey'}`` of ``DCOMConnection``.

Credential sources (``acquire_credentials``), first match wins:

- a password (AS exchange with encrypted-timestamp pre-authentication, AES first, RC4 fallback);
- a keytab (default ``KRB5_CLIENT_KTNAME`` or ``/etc/krb5.keytab``; principal default ``<SHORTHOSTNAME>$``, as
  sssd/realmd/adcli create it): the AES/RC4 key of the newest kvno, then the same AS exchange;
- a credential cache (a path, ``FILE:path`` or ``KRB5CCNAME``): its TGT, or a ready service ticket for the CA.

The KDC is given (``host`` or ``host:port``) or found by ``_dns.find_kdcs`` (DNS SRV ``_kerberos._tcp.<realm>``,
then ``_kerberos._udp``; the KDC is spoken to over TCP), optionally asking a given DNS server (split DNS, labs).

The service principal is derived like Windows does for DCOM: ``RPCSS/<fqdn>`` is what the SCM asks for and AD
maps it to ``HOST/<fqdn>`` (sPNMappings), so we ask for ``HOST/<fqdn>`` and try ``RPCSS/<fqdn>`` when the KDC
does not know it. The CA must be named by its DNS name; its address can be given separately.

Why impacket and not python-gssapi: the tickets go into impacket's DCE/RPC client anyway, impacket is pure Python
(python-gssapi needs libkrb5 and a krb5.conf naming the KDC), and we talk to the KDC we found ourselves. The
TGS exchange is our own: impacket's ``getKerberosTGS`` sends no authenticator checksum, which Heimdal (Samba
AD) refuses with KRB_AP_ERR_INAPP_CKSUM; its ccache writer needs ``starttime`` that Heimdal omits, so we never
write ccaches and read them defensively.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import random
import re
import socket
import stat
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils import _dns
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    InvalidInput,
    KerberosFailure,
)

if HAS_IMPACKET:
    from impacket.krb5 import constants as krb_constants
    from impacket.krb5 import crypto as krb_crypto
    from impacket.krb5.asn1 import (
        AP_REQ, AS_REP, TGS_REP, TGS_REQ, Authenticator, EncASRepPart, EncTGSRepPart, KRB_ERROR, seq_set,
        seq_set_iter,
    )
    from impacket.krb5.asn1 import Ticket as TicketAsn1
    from impacket.krb5 import ccache as krb_ccache
    from impacket.krb5.ccache import CCache
    from impacket.krb5.keytab import Keytab
    from impacket.krb5 import kerberosv5 as _impacket_krb5
    from impacket.krb5.kerberosv5 import KerberosError, getKerberosTGT
    from impacket.krb5.types import KerberosTime, Principal, Ticket
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type.univ import noValue
else:
    KerberosError = None
    _impacket_krb5 = None

DEFAULT_KEYTAB = '/etc/krb5.keytab'
DEFAULT_TIMEOUT = 10
KDC_PORT = 88

ETYPE_AES256 = 18
ETYPE_AES128 = 17
ETYPE_RC4 = 23
_ETYPE_PREFERENCE = (ETYPE_AES256, ETYPE_AES128, ETYPE_RC4)
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


def _require_impacket():
    if not HAS_IMPACKET:
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
    return KerberosFailure(summary, detail='%s (%d)' % (name, code), remedy=remedy)


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


# ---------------------------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------------------------
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


def _as_exchange(user, realm, kdcs, password='', nt_hash='', aes_key='', timeout=DEFAULT_TIMEOUT):
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


def _keytab_keys(path, user, realm=None):
    """{etype: key bytes} of the newest kvno for user (realm ignored when None) and the realm found."""
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except (IOError, OSError) as exc:
        raise KerberosFailure('Cannot read the keytab %s' % path, detail=str(exc),
                              remedy='Give a readable keytab (kerberos_keytab) or run as a user that can read '
                                     'it (root for /etc/krb5.keytab).')
    try:
        keytab = Keytab(data)
    except Exception as exc:
        raise KerberosFailure('The keytab %s is not a valid keytab' % path, detail=str(exc))
    best = {}
    found_realm = None
    names = []
    for entry in keytab.entries:
        if getattr(entry, 'deleted', False):
            continue
        main = entry.main_part
        pname = main['principal'].prettyPrint()
        pname = pname.decode('utf-8', 'replace') if isinstance(pname, bytes) else str(pname)
        names.append(pname)
        name, _sep, prealm = pname.rpartition('@')
        if name.upper() != user.upper() or (realm and prealm.upper() != realm.upper()):
            continue
        etype = int(main['keyblock']['keytype'])
        kvno = int(getattr(entry, 'kvno', None) or main['vno8'])
        value = bytes(main['keyblock']['keyvalue']['data'])
        if etype not in best or kvno >= best[etype][0]:
            best[etype] = (kvno, value)
        found_realm = prealm
    if not best:
        raise KerberosFailure('The keytab %s has no key for %s%s' % (path, user, ('@' + realm) if realm else ''),
                              detail='principals in the keytab: %s' % ', '.join(sorted(set(names))[:10]),
                              remedy='Give the principal (username) as it appears in the keytab, e.g. HOST$.')
    return dict((k, v[1]) for k, v in best.items()), found_realm


def _ccache_path(ccache):
    value = ccache or os.environ.get('KRB5CCNAME') or ''
    if not value:
        value = '/tmp/krb5cc_%d' % os.getuid()
    if value.upper().startswith('FILE:'):
        value = value[5:]
    elif ':' in value.split('/')[0]:
        raise KerberosFailure('Credential cache type %s is not supported' % value.split(':')[0],
                              remedy='Use a FILE: credential cache (KRB5CCNAME=FILE:/path).')
    return value


def check_default_ccache(path):
    """A credential cache the user did not name (KRB5CCNAME or /tmp/krb5cc_<uid>) is used only when it is a regular
    file owned by the effective user and not writable by group or others (a planted cache would make us act as
    someone else). Raises KerberosFailure when refused; a missing file passes (callers report it)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    euid = os.geteuid()
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = 'it is not a regular file'
    elif st.st_uid != euid:
        why = 'it is owned by uid %d, not by the user running the module (uid %d)' % (st.st_uid, euid)
    elif st.st_mode & 0o022:
        why = 'it is writable by group or others (mode %04o)' % (st.st_mode & 0o7777)
    if why:
        raise KerberosFailure('The default credential cache %s is not used: %s' % (path, why),
                              remedy='Remove it and run kinit again as this user, or name a credential cache '
                                     'explicitly (kerberos_ccache).')


def ccache_principal(ccache=None):
    """The client principal (user@REALM) of a credential cache (``ccache``, KRB5CCNAME or the default)."""
    path = _ccache_path(ccache)
    if not ccache:
        check_default_ccache(path)
    if not os.path.exists(path):
        raise KerberosFailure('The credential cache %s does not exist' % path,
                              remedy='Run kinit first, or give username with a password or keytab.')
    try:
        client = CCache.loadFile(path).principal.prettyPrint()
    except Exception as exc:
        raise KerberosFailure('Cannot read the credential cache %s' % path, detail=str(exc))
    return client.decode('utf-8', 'replace') if isinstance(client, bytes) else str(client)


def _ccache_credentials(path, user=None, realm=None):
    if not os.path.exists(path):
        raise KerberosFailure('The credential cache %s does not exist' % path,
                              remedy='Run kinit first, or give a password or keytab.')
    try:
        cc = CCache.loadFile(path)
    except Exception as exc:
        raise KerberosFailure('Cannot read the credential cache %s' % path, detail=str(exc))
    client = cc.principal.prettyPrint()
    client = client.decode('utf-8', 'replace') if isinstance(client, bytes) else str(client)
    cuser, _sep, crealm = client.rpartition('@')
    if user and cuser.upper() != user.upper():
        raise KerberosFailure('The credential cache %s holds tickets of %s, not %s' % (path, client, user),
                              remedy='Use the cache of that principal (kinit %s) or leave username unset.' % user)
    if realm and crealm.upper() != realm.upper():
        raise KerberosFailure('The credential cache %s is for realm %s, not %s' % (path, crealm, realm))
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    tgt = None
    services = {}
    expired = []
    for cred in cc.credentials:
        server = cred['server'].prettyPrint()
        server = server.decode('utf-8', 'replace') if isinstance(server, bytes) else str(server)
        sname = server.rpartition('@')[0]
        if sname.upper().startswith('X-CACHECONF:') or sname.startswith('krb5_ccache_conf_data'):
            continue
        if cred['time']['endtime'] and cred['time']['endtime'] <= now:
            expired.append(sname)
            continue
        if sname.upper() == ('KRBTGT/%s' % crealm).upper():
            tgt = cred.toTGT()
        else:
            services[sname.upper()] = cred.toTGS()
    if tgt is None and not services:
        why = ('its tickets have expired (%s)' % ', '.join(expired)) if expired else 'it holds no tickets'
        raise KerberosFailure('The credential cache %s cannot be used: %s' % (path, why),
                              remedy='Run kinit again, or give a password or keytab.')
    creds = KerberosCredentials(cuser, crealm, tgt, source='ccache', service_tickets=services)
    creds.ccache_path = path
    return creds


def acquire_credentials(realm=None, user=None, password=None, nt_hash=None, keytab=None, ccache=None, kdc=None,
                        dns_server=None, use_keytab=False, timeout=DEFAULT_TIMEOUT, aes_key=None):
    """KerberosCredentials from a password (or NT hash / AES key), a keytab or a credential cache (in that order).

    ``use_keytab``: use the default keytab (KRB5_CLIENT_KTNAME or /etc/krb5.keytab) when none is given.
    Without password, keytab or use_keytab, the ccache (``ccache``, else KRB5CCNAME, else /tmp/krb5cc_<uid>) is
    used; when none of those is set or exists, the default keytab with the machine principal (``<HOST>$``).
    """
    _require_impacket()
    realm = (realm or '').upper()
    if password or nt_hash or aes_key:
        if not user:
            raise InvalidInput('Kerberos with a password needs the user name')
        if not realm:
            raise InvalidInput('Kerberos needs the realm (domain)')
        kdcs = resolve_kdcs(realm, kdc, dns_server, timeout)
        if aes_key and not password:
            try:
                aes_key = bytes(bytearray.fromhex(aes_key)) if not isinstance(aes_key, bytes) else aes_key
            except ValueError:
                raise InvalidInput('The AES key must be hexadecimal')
        tgt, used = _as_exchange(user, realm, kdcs, password=password or '', nt_hash=nt_hash or '',
                                 aes_key=(aes_key or '') if not password else '', timeout=timeout)
        return KerberosCredentials(user, realm, tgt, 'password', used)
    if keytab or use_keytab:
        path = keytab or os.environ.get('KRB5_CLIENT_KTNAME', '').replace('FILE:', '') or DEFAULT_KEYTAB
        user = user or _principals.machine_account()
        keys, found_realm = _keytab_keys(path, user, realm or None)
        realm = realm or (found_realm or '').upper()
        if not realm:
            raise InvalidInput('Kerberos needs the realm (domain)')
        kdcs = resolve_kdcs(realm, kdc, dns_server, timeout)
        last = None
        for etype in _ETYPE_PREFERENCE:
            if etype not in keys:
                continue
            kwargs = {'nt_hash': keys[etype]} if etype == ETYPE_RC4 else {'aes_key': keys[etype]}
            try:
                tgt, used = _as_exchange(user, realm, kdcs, timeout=timeout, **kwargs)
            except KerberosFailure as exc:
                last = exc
                if '(14)' in str(exc.detail or ''):   # KDC_ERR_ETYPE_NOSUPP: try the next key
                    continue
                raise
            return KerberosCredentials(user, realm, tgt, 'keytab', used)
        raise last or KerberosFailure('The keytab %s has no AES or RC4 key for %s' % (path, user))
    path = _ccache_path(ccache)
    explicit = bool(ccache or os.environ.get('KRB5CCNAME'))
    default_keytab = os.environ.get('KRB5_CLIENT_KTNAME', '').replace('FILE:', '') or DEFAULT_KEYTAB
    if not explicit and not os.path.exists(path) and os.access(default_keytab, os.R_OK):
        # nothing given and no default ccache: the host's own identity, like Windows autoenrollment
        return acquire_credentials(realm, user, keytab=default_keytab, kdc=kdc, dns_server=dns_server,
                                   timeout=timeout)
    if not explicit and not os.path.exists(path):
        raise KerberosFailure('No Kerberos credentials: no password, no keytab, no credential cache (%s) and no '
                              'readable %s' % (path, default_keytab),
                              remedy='Give a password, a keytab (kerberos_keytab) or a credential cache '
                                     '(kerberos_ccache / KRB5CCNAME, e.g. after kinit).')
    if not ccache:
        check_default_ccache(path)
    return _ccache_credentials(path, user, realm or None)


# ---------------------------------------------------------------------------------------------------------------
# TGS exchange (own: with the authenticator checksum Heimdal requires)
# ---------------------------------------------------------------------------------------------------------------
MAX_KDC_REPLY = 1024 * 1024     # bytes; a Windows KDC reply (tickets with a large PAC) stays far below


def _kdc_exchange(message, host, port, timeout):
    """One KDC exchange over TCP (RFC 4120 7.2.2): the raw reply, its length bounded by ``MAX_KDC_REPLY``."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
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
    _require_impacket()
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
            if '(7)' not in str(exc.detail or ''):
                raise
            first_error = first_error or exc
    raise first_error


# ---------------------------------------------------------------------------------------------------------------
# Credential cache writer (for GSSAPI users such as LDAP SASL: MIT krb5 then needs neither a KDC nor krb5.conf)
# ---------------------------------------------------------------------------------------------------------------
def _ccache_header():
    header = krb_ccache.Header()
    header['tag'] = 1
    header['taglen'] = 8
    header['tagdata'] = b'\xff\xff\xff\xff\x00\x00\x00\x00'
    return header


def _timestamp(value):
    when = KerberosTime.from_asn1(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp())


def _ccache_credential(ticket):
    """A ccache credential from an impacket ticket dict that carries ``replyKey`` (our AS/TGS exchanges).

    Heimdal omits the optional starttime: authtime stands in (impacket's own writer fails there)."""
    key, usage = ticket['replyKey']
    spec, part_spec = (AS_REP(), EncASRepPart()) if usage == 3 else (TGS_REP(), EncTGSRepPart())
    rep = decoder.decode(ticket['KDC_REP'], asn1Spec=spec)[0]
    profile = krb_crypto._enctype_table[int(rep['enc-part']['etype'])]
    plain = profile.decrypt(key, usage, rep['enc-part']['cipher'].asOctets())
    part = decoder.decode(plain, asn1Spec=part_spec)[0]
    client = Principal()
    client.from_asn1(rep, 'crealm', 'cname')
    server = Principal()
    server.from_asn1(part, 'srealm', 'sname')
    cred = krb_ccache.Credential()
    cred['client'] = krb_ccache.Principal()
    cred['client'].fromPrincipal(client)
    cred['server'] = krb_ccache.Principal()
    cred['server'].fromPrincipal(server)
    cred['is_skey'] = 0
    cred['key'] = krb_ccache.KeyBlockV4()
    cred['key']['keytype'] = int(part['key']['keytype'])
    cred['key']['keyvalue'] = part['key']['keyvalue'].asOctets()
    cred['key']['keylen'] = len(cred['key']['keyvalue'])
    cred['time'] = krb_ccache.Times()
    cred['time']['authtime'] = _timestamp(part['authtime'])
    cred['time']['starttime'] = _timestamp(part['starttime'] if part['starttime'].hasValue() else part['authtime'])
    cred['time']['endtime'] = _timestamp(part['endtime'])
    if part['renew-till'].hasValue():
        cred['time']['renew_till'] = _timestamp(part['renew-till'])
    bits = ''.join(str(bit) for bit in part['flags'])[:32].ljust(32, '0')
    cred['tktflags'] = int(bits, 2)
    cred['num_address'] = 0
    cred.ticket = krb_ccache.CountedOctetString()
    cred.ticket['data'] = encoder.encode(rep['ticket'].clone(tagSet=TicketAsn1.tagSet, cloneValueFlag=True))
    cred.ticket['length'] = len(cred.ticket['data'])
    cred.secondTicket = krb_ccache.CountedOctetString()
    cred.secondTicket['data'] = b''
    cred.secondTicket['length'] = 0
    return cred, client


def write_ccache(creds, path, spns=(), kdc=None, dns_server=None, timeout=DEFAULT_TIMEOUT):
    """Write a FILE credential cache (mode 0600) holding the TGT and service tickets for ``spns`` (fetched now),
    for libraries that only take a ccache (python-gssapi / MIT krb5 for LDAP SASL GSSAPI). Returns 'FILE:<path>'.
    ``path`` must be new (O_EXCL, no symlink) inside a private directory of ours (``tempfile.mkdtemp``: 0700), which
    the caller removes in ``finally``.

    Credentials read from a ccache are copied with the new service tickets added."""
    _require_impacket()
    tickets = [get_service_ticket(creds, spn, kdc, dns_server, timeout) for spn in spns]
    if creds.source == 'ccache':
        cache = CCache.loadFile(_ccache_path(creds.ccache_path)) if getattr(creds, 'ccache_path', None) else None
    else:
        cache = None
    if cache is None:
        cache = CCache()
        cache.headers = [_ccache_header()]
        cache.credentials = []
        if creds.tgt is None or 'replyKey' not in creds.tgt:
            raise KerberosFailure('No ticket-granting ticket to write to a credential cache')
        cred, client = _ccache_credential(creds.tgt)
        cache.principal = krb_ccache.Principal()
        cache.principal.fromPrincipal(client)
        cache.credentials.append(cred)
    for ticket in tickets:
        if 'replyKey' in ticket:
            cache.credentials.append(_ccache_credential(ticket)[0])
    parent = os.path.dirname(os.path.abspath(path))
    st = os.lstat(parent)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise KerberosFailure('Refusing to write a credential cache into %s: it is not a private directory of '
                              'this user (mode 0700)' % parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
    with os.fdopen(fd, 'wb') as handle:
        handle.write(cache.getData())
    return 'FILE:%s' % path


# ---------------------------------------------------------------------------------------------------------------
# The authentication method for the DCOM transport
# ---------------------------------------------------------------------------------------------------------------
class KerberosTicketAuth(object):
    """Kerberos for ``_dcom.DcomSession``: same interface as ``_auth.AuthMethod`` (``transport_kwargs()``,
    ``describe()``, ``kind``, ``principal``), tickets acquired on first use for the CA ``ca_host`` (its DNS name).

    ``DcomSession(ca_host, auth, remote_host=<address or None>)``: the session connects to ``remote_host`` and
    impacket's resolver picks the CA binding that carries the DNS name.
    """

    kind = 'kerberos'

    def __init__(self, ca_host=None, realm=None, user=None, password=None, nt_hash=None, keytab=None, ccache=None,
                 kdc=None, dns_server=None, use_keytab=False, spn=None, timeout=DEFAULT_TIMEOUT, aes_key=None):
        if user:
            user, dom = _principals.split_user(user)
            realm = realm or dom
        self.ca_host = ca_host
        self.realm = (realm or '').upper()
        self.user = user
        self._password = password
        self._nt_hash = nt_hash
        self._aes_key = aes_key
        self.keytab = keytab
        self.ccache = ccache
        self.kdc = kdc
        self.dns_server = dns_server
        self.use_keytab = use_keytab
        self.spn = spn
        self.timeout = timeout
        self.credentials = None
        self.service_ticket = None
        self.service_principal = None

    @property
    def domain(self):
        return self.credentials.realm if self.credentials else self.realm

    @property
    def principal(self):
        if self.credentials is not None:
            return self.credentials.principal
        return '%s@%s' % (self.user or '?', self.realm or '?')

    def set_ca_host(self, host):
        """The CA's DNS name, when not given at construction (``_dcom.DcomSession`` passes its host)."""
        if not self.ca_host:
            self.ca_host = host

    def source(self):
        if self._password or self._nt_hash or self._aes_key:
            return 'password'
        if self.keytab or self.use_keytab:
            return 'keytab'
        return 'ccache'

    def describe(self):
        return 'kerberos authentication (%s) as %s' % (self.source(), self.principal)

    __str__ = describe

    def __repr__(self):
        return 'KerberosTicketAuth(ca_host=%r, principal=%r, source=%s)' % (
            self.ca_host, self.principal, self.source())

    def acquire(self, ca_host=None):
        """Get the TGT and the CA's service ticket now (raises KerberosFailure / InvalidInput); a different
        ``ca_host`` gets its own service ticket with the same TGT."""
        ca_host = ca_host or self.ca_host
        if self.credentials is None:
            self.credentials = acquire_credentials(self.realm, self.user, self._password, self._nt_hash,
                                                   self.keytab, self.ccache, self.kdc, self.dns_server,
                                                   self.use_keytab, self.timeout, aes_key=self._aes_key)
        if self.service_ticket is None or (ca_host and ca_host != self.ca_host):
            self.ca_host = ca_host
            self.service_principal, self.service_ticket = ca_service_ticket(
                self.credentials, ca_host, self.kdc, self.dns_server, self.spn, self.timeout)
        return self

    def transport_kwargs(self):
        self.acquire()
        creds = self.credentials
        kdc_host = creds.kdc[0] if creds.kdc else (_dns.parse_host_port(self.kdc, KDC_PORT)[0] if self.kdc else None)
        return {'username': creds.user, 'password': '', 'domain': creds.realm, 'lmhash': '', 'nthash': '',
                'aesKey': '', 'TGT': creds.tgt, 'TGS': self.service_ticket, 'doKerberos': True,
                'kdcHost': kdc_host}
