# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kerberos for LDAP binds (SASL GSSAPI): one job, the gssapi credentials an ``auth=kerberos`` bind uses.

- with a password, an NT hash, a keytab (``kerberos_keytab``) or a FILE credential cache (``kerberos_ccache``)
  (``own_tickets``): we get the TGT (or take the ccache's) and the ``ldap/<DC>`` ticket ourselves
  (``_kerberos``/``_ccache``, KDC = the DC or found by SRV, as for DCOM) into a private credential cache, so no
  krb5.conf is needed (``own_credentials``; the caller removes the returned directory after the bind);
- else (``gssapi_credentials``): the default ccache, which must be the user's own and private (``default_ccache``,
  the check of ``_ccache``), or a ccache of another type (``KEYRING:``, ``KCM:``) that libkrb5 reads itself.

gssapi is an optional import (``_deps``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_GSSAPI
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import KerberosFailure, LdapError

if HAS_GSSAPI:
    import gssapi
else:
    gssapi = None


def own_tickets_ccache(name):
    """A credential cache name we read ourselves: a path or ``FILE:path`` (not KEYRING:, KCM:, MEMORY:...)."""
    if not name:
        return False
    return name.upper().startswith('FILE:') or ':' not in name.split('/')[0]


def own_tickets(settings):
    """Whether auth=kerberos comes with a password, NT hash, keytab or FILE ccache (we get the tickets ourselves,
    with no krb5.conf)."""
    s = settings
    return s.auth == 'kerberos' and bool(s.password or s.nt_hash or s.kerberos_keytab
                                         or own_tickets_ccache(s.kerberos_ccache))


def own_credentials(settings, spn_host, kdc):
    """Kerberos from a password, NT hash, keytab or ccache: get the TGT (or take the ccache's) and the ldap/<DC>
    ticket ourselves (KDC = the DC, or found by SRV) into a private credential cache, so no krb5.conf is needed;
    gssapi then binds with it."""
    s = settings
    if not HAS_GSSAPI:
        raise LdapError('auth=kerberos needs the python gssapi library (pip install gssapi) and a Kerberos client library')
    secret = bool(s.password or s.nt_hash)
    if secret and not s.username:
        raise LdapError('auth=kerberos with a password or NT hash needs username')
    user, domain = _principals.split_user(s.username, s.domain) if s.username else (None, None)
    realm = _principals.realm_of(s.domain or domain)
    ccache = None
    if not secret and not s.kerberos_keytab:
        ccache = s.kerberos_ccache[5:] if s.kerberos_ccache.upper().startswith('FILE:') else s.kerberos_ccache
    ccache_dir = None
    try:
        creds = _kerberos.acquire_credentials(realm=realm, user=user, password=s.password, nt_hash=s.nt_hash,
                                              keytab=None if secret else s.kerberos_keytab, ccache=ccache,
                                              kdc=kdc, dns_server=kdc, timeout=s.timeout)
        ccache_dir = tempfile.mkdtemp(prefix='adcs-ldap-krb5-')     # 0700, ours; removed by the caller
        path = _ccache.write_ccache(creds, os.path.join(ccache_dir, 'ccache'), spns=['ldap/%s' % spn_host],
                                    kdc=kdc, dns_server=kdc, timeout=s.timeout)
    except Exception as exc:  # _kerberos raises actionable errors; keep their text
        if ccache_dir:
            shutil.rmtree(ccache_dir, ignore_errors=True)
        raise LdapError('Kerberos for LDAP failed: %s' % (exc.to_message() if hasattr(exc, 'to_message') else exc))
    try:
        return ccache_dir, gssapi.Credentials(usage='initiate', store={'ccache': path})
    except Exception as exc:
        shutil.rmtree(ccache_dir, ignore_errors=True)
        raise LdapError('no usable Kerberos credentials from the %s: %s' % (
            'password' if secret else 'keytab' if s.kerberos_keytab else 'credential cache', exc))


def gssapi_credentials(settings):
    """gssapi credentials from the ccache / keytab options (or the default ccache) for libkrb5 to use itself."""
    s = settings
    if not HAS_GSSAPI:
        raise LdapError('auth=kerberos needs the python gssapi library (pip install gssapi) and a Kerberos client library')
    store = {}
    if s.kerberos_ccache:
        store['ccache'] = s.kerberos_ccache if ':' in s.kerberos_ccache else 'FILE:%s' % s.kerberos_ccache
    if s.kerberos_keytab:
        store['client_keytab'] = s.kerberos_keytab
        if 'ccache' not in store:
            store['ccache'] = 'MEMORY:adcs-enrollment'
    if not store:
        default = default_ccache()
        if default:
            store['ccache'] = default
    name = None
    if s.username:
        principal = _principals.kerberos_principal(s.username, s.domain)
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
    try:
        if store:
            creds = gssapi.Credentials(name=name, usage='initiate', store=store)
        else:
            creds = gssapi.Credentials(name=name, usage='initiate')
    except Exception as exc:
        raise LdapError('no usable Kerberos credentials (ccache %s, keytab %s): %s'
                        % (s.kerberos_ccache or 'default', s.kerberos_keytab or 'none', exc))
    return creds


def default_ccache():
    """The default credential cache as a pinned FILE: name, after the ownership check of the DCOM path
    (_ccache.check_default_ccache: a cache the user did not name is used only when it is a regular file of
    the user running the module, not writable by others); None when it is not a FILE cache (KEYRING:, KCM:
    are the user's own by construction) or does not exist (gssapi then reports the missing credentials)."""
    value = os.environ.get('KRB5CCNAME') or ''
    if value and not value.upper().startswith('FILE:') and ':' in value.split('/')[0]:
        return None
    path = _ccache.ccache_path(None)
    try:
        _ccache.check_default_ccache(path)
    except KerberosFailure as exc:
        raise LdapError('auth=kerberos: %s' % exc.to_message())
    return 'FILE:%s' % path if os.path.exists(path) else None


def kerberos_env(settings):
    """Environment for libraries that read KRB5CCNAME / KRB5_CLIENT_KTNAME (e.g. subprocess tools)."""
    env = {}
    if settings.kerberos_ccache:
        env['KRB5CCNAME'] = settings.kerberos_ccache
    if settings.kerberos_keytab:
        env['KRB5_CLIENT_KTNAME'] = settings.kerberos_keytab
    return env


def apply_kerberos_env(settings, environ=None):
    environ = os.environ if environ is None else environ
    environ.update(kerberos_env(settings))
