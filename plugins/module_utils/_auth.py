# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Authentication from module parameters, for DCOM and LDAP alike: one job, turning the connection options into
credentials.

The option adapter (the connection options of ``_argspec.connection_argument_spec``; every auth option is honoured
by both transports):

- ``dcom_auth(params)``: the DCOM method: ``auth=password``/``ntlm`` is NTLM with ``password`` or ``nt_hash``;
  ``auth=kerberos`` is Kerberos with ``password``/``nt_hash``, ``kerberos_keytab`` (principal ``username`` or the
  machine's ``<HOST>$``) or ``kerberos_ccache``/KRB5CCNAME (principal from the cache), the KDC and DNS server being
  ``domain_controller`` (else DNS SRV of ``domain``);
- ``ldap_settings(params)``, ``ldap_connect(params)``, ``ldap_connector(params)``: the directory with the same
  options (``_ldap.LdapSettings``/``AdConnection``); ``has_directory(params)``.

The DCOM methods are one class each behind one interface (``AuthMethod``): ``transport_kwargs()`` gives the
credentials ``_rpc_auth.security_context`` takes (for ``_dcom.DcomSession``), ``describe()`` a secret-free text for
logs and results. ``repr()``
never shows a password, hash or key. User names are parsed by ``_principals``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
# _ccache, _kerberos and _ldap (impacket's Kerberos, ldap3, gssapi, dnspython) are imported where they are used:
# a password or NT hash session to a given CA needs none of them.
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import connection_params
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

_HEX32 = re.compile(r'^[0-9a-fA-F]{32}$')


class AuthMethod(object):
    """Interface of the authentication methods."""

    kind = 'none'
    secret_fields = ()

    def __init__(self, user, domain=None):
        """``user`` in any form of ``_principals``; an explicit ``domain`` wins over the name's own."""
        self.user, own = _principals.split_user(user)
        self.domain = domain or own

    @property
    def principal(self):
        return '%s\\%s' % (self.domain, self.user) if self.domain else self.user

    def transport_kwargs(self):
        """The credentials for ``_rpc_auth.security_context`` (username, password, domain, lmhash, nthash, ...)."""
        raise NotImplementedError

    def describe(self):
        return '%s authentication as %s' % (self.kind, self.principal)

    def __repr__(self):
        hidden = ''.join(', %s=<hidden>' % f for f in self.secret_fields)
        return '%s(user=%r, domain=%r%s)' % (type(self).__name__, self.user, self.domain, hidden)

    __str__ = describe


class PasswordAuth(AuthMethod):
    """NTLM with a password."""

    kind = 'password'
    secret_fields = ('password',)

    def __init__(self, user, domain=None, password=None):
        super(PasswordAuth, self).__init__(user, domain)
        if password is None or password == '':
            raise InvalidInput('A password is required for password authentication')
        self._password = password

    def transport_kwargs(self):
        return {'username': self.user, 'password': self._password, 'domain': self.domain,
                'lmhash': '', 'nthash': '', 'doKerberos': False}


class NtHashAuth(AuthMethod):
    """NTLM pass-the-hash: the NT hash (32 hex digits; 'LM:NT' accepted, the LM part is ignored)."""

    kind = 'nt_hash'
    secret_fields = ('nt_hash',)

    def __init__(self, user, domain=None, nt_hash=None):
        super(NtHashAuth, self).__init__(user, domain)
        value = (nt_hash or '').strip()
        if ':' in value:
            value = value.split(':')[-1]
        if not _HEX32.match(value):
            raise InvalidInput('The NT hash must be 32 hexadecimal digits')
        self._nt_hash = value.lower()

    def transport_kwargs(self):
        return {'username': self.user, 'password': '', 'domain': self.domain,
                'lmhash': 'aad3b435b51404eeaad3b435b51404ee', 'nthash': self._nt_hash, 'doKerberos': False}


class KerberosAuth(AuthMethod):
    """Kerberos (GSS negotiate at packet privacy) with the tickets from ``_kerberos``: password, NT hash or AES key;
    a keytab; or a ccache (``ccache`` or KRB5CCNAME) when no secret is given. The KDC is ``kdc_host`` or found by
    DNS SRV; the service ticket is for HOST/<CA DNS name> (the DCOM session passes its host)."""

    kind = 'kerberos'
    secret_fields = ('password', 'nt_hash', 'aes_key')

    def __init__(self, user, domain=None, password=None, nt_hash=None, aes_key=None, kdc_host=None, ccache=None,
                 keytab=None, dns_server=None, ca_host=None):
        super(KerberosAuth, self).__init__(user, domain)
        self._tickets = None
        self.ccache, self.keytab, self.dns_server, self.ca_host = ccache, keytab, dns_server, ca_host
        if not self.domain:
            raise InvalidInput('Kerberos authentication needs the realm (domain)')
        self._password = password or ''
        self._nt_hash = ''
        if nt_hash:
            value = nt_hash.split(':')[-1].strip()
            if not _HEX32.match(value):
                raise InvalidInput('The NT hash must be 32 hexadecimal digits')
            self._nt_hash = value.lower()
        if aes_key and not re.match(r'^([0-9a-fA-F]{32}|[0-9a-fA-F]{64})$', aes_key):
            raise InvalidInput('The AES key must be 32 or 64 hexadecimal digits')
        self._aes_key = aes_key or ''
        self.kdc_host = kdc_host

    def set_ca_host(self, host):
        """The CA this session goes to (its DNS name names the service ticket); an address keeps a given name."""
        if host and not (self.ca_host and (host.replace('.', '').isdigit() or ':' in host)):
            self.ca_host = host

    def transport_kwargs(self):
        if not self.ca_host:   # no CA name (yet): the secrets for impacket's own Kerberos, as before
            return {'username': self.user, 'password': self._password, 'domain': self.domain, 'lmhash': '',
                    'nthash': self._nt_hash, 'aesKey': self._aes_key, 'doKerberos': True, 'kdcHost': self.kdc_host}
        if self._tickets is None:
            from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos
            self._tickets = _kerberos.KerberosTicketAuth(self.ca_host, self.domain, self.user, self._password,
                                                         self._nt_hash, self.keytab, self.ccache, self.kdc_host,
                                                         self.dns_server, aes_key=self._aes_key)
        self._tickets.acquire(self.ca_host)
        return self._tickets.transport_kwargs()


# ---------------------------------------------------------------------------------------------------------------
# The option adapter: module parameters (connection_argument_spec) -> DCOM method, LDAP settings and connection
# ---------------------------------------------------------------------------------------------------------------
def dcom_auth(params):
    """The AuthMethod for DCOM from the connection options (see the module docstring); InvalidInput when the
    options name no identity."""
    method = _dcom_auth(params)
    method.rpc_package = params.get('rpc_auth_package') or 'negotiate'   # _dcom: the RPC auth package
    return method


def _dcom_auth(params):
    username = params.get('username')
    domain = params.get('domain')
    if (params.get('auth') or 'password') == 'kerberos':
        # the principal: username, or the machine's <HOST>$ with a keytab, or the one in the credential cache
        if not username and params.get('kerberos_keytab'):
            username = _principals.machine_account()
        elif not username and not params.get('password') and not params.get('nt_hash'):
            from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
            username = _ccache.ccache_principal(params.get('kerberos_ccache'))
        user, realm = _principals.split_user(username, domain) if username else (None, domain)
        return KerberosAuth(user, realm or '', password=params.get('password'), nt_hash=params.get('nt_hash'),
                            kdc_host=params.get('domain_controller'), ccache=params.get('kerberos_ccache'),
                            keytab=params.get('kerberos_keytab'), dns_server=params.get('domain_controller'))
    if not username:
        raise InvalidInput('username is required to authenticate to the CA')
    user, user_domain = _principals.split_user(username, domain)
    if params.get('nt_hash') and not params.get('password'):
        return NtHashAuth(user, user_domain, params['nt_hash'])
    return PasswordAuth(user, user_domain, params.get('password'))


def has_directory(params):
    """Whether the options name a directory (domain or domain_controller)."""
    return bool(params.get('domain') or params.get('domain_controller'))


def ldap_settings(params, domain_controller=None):
    """``_ldap.LdapSettings`` from the connection options; ``domain_controller`` replaces the option's."""
    options = connection_params(params)
    if domain_controller:
        options['domain_controller'] = domain_controller
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
    return _ldap.LdapSettings.from_params(options)


def ldap_connect(params, domain_controller=None):
    """A connected (bound) ``_ldap.AdConnection``; the caller closes it. Raises MissingLibrary without ldap3 and
    LdapError (both AdcsError) when the directory cannot be reached or refuses the bind."""
    _deps.require('ldap3')
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
    return _ldap.AdConnection(ldap_settings(params, domain_controller)).connect()


def ldap_connector(params):
    """``connect(domain_controller=None)``: ``ldap_connect`` with these options, for lazy directory access."""

    def connect(domain_controller=None):
        return ldap_connect(params, domain_controller)
    return connect
