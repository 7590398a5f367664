# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kerberos for the DCOM transport: one job, the client's credentials and the DCOM auth method.

``acquire_credentials`` turns the user's Kerberos options into a TGT (``_kdc.KerberosCredentials``), first match
wins:

- a password, NT hash or AES key (AS exchange with encrypted-timestamp pre-authentication, AES first, RC4 fallback);
- a keytab (default ``KRB5_CLIENT_KTNAME`` or ``/etc/krb5.keytab``; principal default ``<SHORTHOSTNAME>$``, as
  sssd/realmd/adcli create it): the AES/RC4 key of the newest kvno, then the same AS exchange;
- a credential cache (``_ccache``: a path, ``FILE:path`` or ``KRB5CCNAME``): its TGT, or a ready service ticket.

``KerberosTicketAuth`` gives our RPC client (``_rpc_auth``) what RPC_C_AUTHN_GSS_NEGOTIATE (9) at packet privacy needs:
the TGT and a service ticket for the CA (``_kdc.ca_service_ticket``: ``HOST/<fqdn>``, then ``RPCSS/<fqdn>``, as
Windows asks for DCOM), as the ``TGT=``/``TGS=`` dictionaries ``{'KDC_REP', 'cipher', 'sessionKey'}`` (impacket's
shapes). The CA must be named by its DNS name; its address can be given separately.

Why impacket and not python-gssapi: the tickets go into impacket's DCE/RPC client anyway, impacket is pure Python
(python-gssapi needs libkrb5 and a krb5.conf naming the KDC), and we talk to the KDC we found ourselves.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET_KERBEROS
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _dns
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput, KerberosFailure
from ansible_collections.adcs.enrollment.plugins.module_utils._kdc import (
    DEFAULT_TIMEOUT, ETYPE_PREFERENCE, ETYPE_RC4, KDC_PORT,
)

DEFAULT_KEYTAB = '/etc/krb5.keytab'

if HAS_IMPACKET_KERBEROS:
    from impacket.krb5.keytab import Keytab


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


def acquire_credentials(realm=None, user=None, password=None, nt_hash=None, keytab=None, ccache=None, kdc=None,
                        dns_server=None, use_keytab=False, timeout=DEFAULT_TIMEOUT, aes_key=None):
    """KerberosCredentials from a password (or NT hash / AES key), a keytab or a credential cache (in that order).

    ``use_keytab``: use the default keytab (KRB5_CLIENT_KTNAME or /etc/krb5.keytab) when none is given.
    Without password, keytab or use_keytab, the ccache (``ccache``, else KRB5CCNAME, else /tmp/krb5cc_<uid>) is
    used; when none of those is set or exists, the default keytab with the machine principal (``<HOST>$``).
    """
    _kdc.require_impacket()
    realm = (realm or '').upper()
    if password or nt_hash or aes_key:
        if not user:
            raise InvalidInput('Kerberos with a password needs the user name')
        if not realm:
            raise InvalidInput('Kerberos needs the realm (domain)')
        kdcs = _kdc.resolve_kdcs(realm, kdc, dns_server, timeout)
        if aes_key and not password:
            try:
                aes_key = bytes(bytearray.fromhex(aes_key)) if not isinstance(aes_key, bytes) else aes_key
            except ValueError:
                raise InvalidInput('The AES key must be hexadecimal')
        tgt, used = _kdc.as_exchange(user, realm, kdcs, password=password or '', nt_hash=nt_hash or '',
                                     aes_key=(aes_key or '') if not password else '', timeout=timeout)
        return _kdc.KerberosCredentials(user, realm, tgt, 'password', used)
    if keytab or use_keytab:
        path = keytab or os.environ.get('KRB5_CLIENT_KTNAME', '').replace('FILE:', '') or DEFAULT_KEYTAB
        user = user or _principals.machine_account()
        keys, found_realm = _keytab_keys(path, user, realm or None)
        realm = realm or (found_realm or '').upper()
        if not realm:
            raise InvalidInput('Kerberos needs the realm (domain)')
        kdcs = _kdc.resolve_kdcs(realm, kdc, dns_server, timeout)
        last = None
        for etype in ETYPE_PREFERENCE:
            if etype not in keys:
                continue
            kwargs = {'nt_hash': keys[etype]} if etype == ETYPE_RC4 else {'aes_key': keys[etype]}
            try:
                tgt, used = _kdc.as_exchange(user, realm, kdcs, timeout=timeout, **kwargs)
            except KerberosFailure as exc:
                last = exc
                if getattr(exc, 'krb_error_code', None) == 14:   # KDC_ERR_ETYPE_NOSUPP: try the next key
                    continue
                raise
            return _kdc.KerberosCredentials(user, realm, tgt, 'keytab', used)
        raise last or KerberosFailure('The keytab %s has no AES or RC4 key for %s' % (path, user))
    path = _ccache.ccache_path(ccache)
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
        _ccache.check_default_ccache(path)
    return _ccache.ccache_credentials(path, user, realm or None)


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
        self.credentials = self.service_ticket = self.service_principal = None   # set by acquire()

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
            self.service_principal, self.service_ticket = _kdc.ca_service_ticket(
                self.credentials, ca_host, self.kdc, self.dns_server, self.spn, self.timeout)
        return self

    def transport_kwargs(self):
        self.acquire()
        creds = self.credentials
        kdc_host = creds.kdc[0] if creds.kdc else (_dns.parse_host_port(self.kdc, KDC_PORT)[0] if self.kdc else None)
        return {'username': creds.user, 'password': '', 'domain': creds.realm, 'lmhash': '', 'nthash': '',
                'aesKey': '', 'TGT': creds.tgt, 'TGS': self.service_ticket, 'doKerberos': True,
                'kdcHost': kdc_host}
