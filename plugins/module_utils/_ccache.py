# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kerberos credential caches: one job, finding, checking, reading and writing ccache files.

Reading (``ccache_credentials``, ``ccache_principal``): a path, ``FILE:path``, ``KRB5CCNAME`` or the default
``/tmp/krb5cc_<uid>`` (``ccache_path``); the default cache must be ours and private (``check_default_ccache``); read
defensively (Heimdal omits ``starttime``, which impacket's writer needs). Writing (``write_ccache``): the TGT and
service tickets for GSSAPI users such as LDAP SASL, so MIT krb5 needs neither a KDC nor krb5.conf.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import stat

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET_KERBEROS
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import KerberosFailure
from ansible_collections.adcs.enrollment.plugins.module_utils._kdc import DEFAULT_TIMEOUT

if HAS_IMPACKET_KERBEROS:
    from impacket.krb5 import crypto as krb_crypto
    from impacket.krb5.asn1 import AS_REP, TGS_REP, EncASRepPart, EncTGSRepPart
    from impacket.krb5.asn1 import Ticket as TicketAsn1
    from impacket.krb5 import ccache as krb_ccache
    from impacket.krb5.ccache import CCache
    from impacket.krb5.types import KerberosTime, Principal
    from pyasn1.codec.der import decoder, encoder


def ccache_path(ccache):
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
    path = ccache_path(ccache)
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


def ccache_credentials(path, user=None, realm=None):
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
    creds = _kdc.KerberosCredentials(cuser, crealm, tgt, source='ccache', service_tickets=services)
    creds.ccache_path = path
    return creds


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
    _kdc.require_impacket()
    tickets = [_kdc.get_service_ticket(creds, spn, kdc, dns_server, timeout) for spn in spns]
    if creds.source == 'ccache':
        cache = CCache.loadFile(ccache_path(creds.ccache_path)) if getattr(creds, 'ccache_path', None) else None
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
