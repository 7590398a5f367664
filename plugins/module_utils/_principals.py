# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Principals: one job, parsing account names (user, domain, realm, UPN) the same way everywhere.

Every tuple is ``(user, domain)``, in that order. A name is one of the forms Windows accepts:

- ``DOMAIN\\user`` (down-level logon name; DOMAIN is a NetBIOS or DNS name),
- ``user@domain`` (UPN, or a Kerberos principal ``user@REALM``),
- a distinguished name (``CN=...,DC=...``) or a SID (``S-1-5-...``): passed through whole,
- ``user`` (bare: the domain comes from the ``domain`` option).

``parse()`` says which form a name has; ``split_user()`` gives ``(user, domain)`` where the name's own domain wins
and a bare name takes the default; ``kerberos_principal()`` is ``user@REALM``; ``bind_name()`` what an LDAP simple
bind takes; ``machine_account()`` the ``<SHORTHOSTNAME>$`` of this host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import socket

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

DOWN_LEVEL = 'down-level'
UPN = 'upn'
BARE = 'bare'
DN = 'dn'
SID = 'sid'

Principal = collections.namedtuple('Principal', ['user', 'domain', 'form'])


def parse(name):
    """Principal(user, domain, form) of ``name``; the domain is '' for a bare name, a DN or a SID (``user`` is then
    the whole name). InvalidInput for an empty name."""
    name = (name or '').strip()
    if not name:
        raise InvalidInput('A user name is required')
    if name.upper().startswith('S-1-'):
        return Principal(name, '', SID)
    if '=' in name:
        return Principal(name, '', DN)
    if '\\' in name:
        domain, _sep, user = name.partition('\\')
        return Principal(user, domain, DOWN_LEVEL)
    if '@' in name:
        user, _sep, domain = name.rpartition('@')
        return Principal(user, domain, UPN)
    return Principal(name, '', BARE)


def split_user(name, default_domain=None):
    """(user, domain) of ``name``: its own domain (DOMAIN\\user, user@domain), else ``default_domain`` (or '')."""
    principal = parse(name)
    return principal.user, (principal.domain or default_domain or '')


def realm_of(domain):
    """The Kerberos realm of a DNS domain (its upper-case name), '' for none."""
    return (domain or '').strip().strip('.').upper()


def kerberos_principal(name, default_domain=None, realm=None):
    """``user@REALM`` for ``name``; the realm is ``realm`` if given, else the name's domain, else ``default_domain``
    (a down-level name's NetBIOS domain yields to ``default_domain``, which is a DNS name). A bare name without any
    domain stays bare."""
    principal = parse(name)
    if principal.form == DOWN_LEVEL:
        domain = realm or default_domain or principal.domain
    else:
        domain = realm or principal.domain or default_domain
    return '%s@%s' % (principal.user, realm_of(domain)) if domain else principal.user


def bind_name(name, domain=None):
    """What an LDAP simple bind takes: a UPN, DOMAIN\\user or DN as given; a bare name becomes user@domain (None when
    there is no domain to add)."""
    principal = parse(name)
    if principal.form != BARE:
        return (name or '').strip()
    return '%s@%s' % (principal.user, domain) if domain else None


def machine_account(hostname=None):
    """``<SHORTHOSTNAME>$`` (what adcli/realmd/sssd and Windows name the machine account)."""
    name = (hostname or socket.gethostname() or '').split('.')[0]
    if not name:
        raise InvalidInput('Cannot derive the machine principal from the host name; give username')
    return '%s$' % name.upper()
