# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Optional third-party imports: one job, saying which libraries import and why the others do not.

Every library the collection may use is probed here once (``HAS_<LIB>`` and ``<LIB>_IMPORT_ERROR``, the traceback
of the failed import); files that use a library import its names under ``if HAS_<LIB>:`` and never repeat a
try/except preamble. Modules report a missing library with ``check(module, 'ldap3', ...)`` (Ansible's
``missing_required_lib`` text and the traceback); library code raises ``require('impacket')``'s
``MissingLibrary`` (an ``AdcsError``) or asks ``missing('gssapi', reason)`` for the text.

Only the standard library and ``_errors`` are imported unconditionally: this file imports on any controller.
A library is probed the first time something asks about it (``HAS_<LIB>``/``<LIB>_IMPORT_ERROR`` are computed on
first access, PEP 562), so a run that never touches the protocol stack (the no-op of ``wcce_request``) never
imports impacket, pyasn1, ldap3, dnspython or gssapi.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import MissingLibrary


def _probe(*modules):
    """(True, None) when every module imports, else (False, the traceback of the first failure)."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError:
        import traceback   # only for a library that is missing
        return False, traceback.format_exc()
    return True, None


# name -> (pip distribution, modules probed); the modules are the ones the collection actually imports.
LIBRARIES = {
    'cryptography': ('cryptography', ('cryptography.x509', 'cryptography.hazmat.primitives.serialization',
                                      'cryptography.hazmat.primitives.asymmetric.rsa')),
    # NDR structures only: probing the RPC runtime or Kerberos would import impacket's whole stack (~100 ms) on
    # every enrollment; Kerberos is probed on its own, when Kerberos is used
    'impacket': ('impacket', ('impacket.structure', 'impacket.uuid', 'impacket.dcerpc.v5.ndr',
                              'impacket.dcerpc.v5.dtypes')),
    'impacket_kerberos': ('impacket', ('impacket.krb5.kerberosv5', 'impacket.krb5.ccache', 'impacket.krb5.keytab',
                                       'Cryptodome.Cipher.ARC4')),
    'pyasn1': ('pyasn1', ('pyasn1.codec.der.decoder', 'pyasn1.codec.der.encoder', 'pyasn1_modules.rfc5280',
                          'pyasn1_modules.rfc2986', 'pyasn1_modules.rfc5652', 'pyasn1_modules.rfc2315')),
    'ldap3': ('ldap3', ('ldap3', 'ldap3.core.exceptions', 'ldap3.protocol.microsoft', 'ldap3.utils.conv')),
    'dnspython': ('dnspython', ('dns.resolver', 'dns.exception')),
    'gssapi': ('gssapi', ('gssapi',)),
}


class _Status(dict):
    """name -> (imports, traceback), probed on first lookup (tests may set an entry to fake a missing library)."""

    def __missing__(self, name):
        if name not in LIBRARIES:
            raise KeyError('unknown optional library %r (one of %s)' % (name, ', '.join(sorted(LIBRARIES))))
        self[name] = _probe(*LIBRARIES[name][1])
        return self[name]


_STATUS = _Status()
# HAS_<LIB> / <LIB>_IMPORT_ERROR module attribute -> library name
_ATTRIBUTES = dict([('HAS_' + n.upper(), (n, 0)) for n in LIBRARIES] +
                   [(n.upper() + '_IMPORT_ERROR', (n, 1)) for n in LIBRARIES])


def __getattr__(attribute):
    """``HAS_IMPACKET``, ``IMPACKET_IMPORT_ERROR``, ...: the library is probed when a file first asks."""
    if attribute not in _ATTRIBUTES:
        raise AttributeError('module %r has no attribute %r' % (__name__, attribute))
    name, index = _ATTRIBUTES[attribute]
    return _STATUS[name][index]


def _known(name):
    return _STATUS[name]


def available(name):
    """Whether the optional library ``name`` (a key of LIBRARIES) imports."""
    return _known(name)[0]


def import_error(name):
    """The traceback of the failed import of ``name`` (None when it imports)."""
    return _known(name)[1]


def missing(name, reason=None):
    """The text Ansible's ``missing_required_lib`` gives for ``name`` (with ``reason``, e.g. 'for auth=kerberos')."""
    _known(name)
    pip = LIBRARIES[name][0]
    try:
        from ansible.module_utils.basic import missing_required_lib
    except ImportError:  # pragma: no cover - outside Ansible
        return 'Failed to import the required Python library (%s)%s.' % (pip, ' ' + reason if reason else '')
    return missing_required_lib(pip, reason=reason)


def require(name, reason=None):
    """Raise MissingLibrary (an AdcsError carrying ``library`` and ``import_error``) unless ``name`` imports."""
    has, error = _known(name)
    if not has:
        raise MissingLibrary(missing(name, reason), library=name, import_error=error)


def check(module, *names, **kwargs):
    """Fail the Ansible ``module`` (missing_required_lib text and the import traceback) for the first of ``names``
    that does not import; ``reason=`` is passed on."""
    for name in names:
        has, error = _known(name)
        if not has:
            module.fail_json(msg=missing(name, kwargs.get('reason')), exception=error)
