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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import traceback

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import MissingLibrary


def _probe(*modules):
    """(True, None) when every module imports, else (False, the traceback of the first failure)."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError:
        return False, traceback.format_exc()
    return True, None


# name -> (pip distribution, modules probed); the modules are the ones the collection actually imports.
LIBRARIES = {
    'cryptography': ('cryptography', ('cryptography.x509', 'cryptography.hazmat.primitives.serialization',
                                      'cryptography.hazmat.primitives.asymmetric.rsa')),
    'impacket': ('impacket', ('impacket.dcerpc.v5.dcomrt', 'impacket.dcerpc.v5.rpcrt', 'impacket.krb5.ccache',
                              'impacket.krb5.kerberosv5', 'Cryptodome.Cipher.ARC4')),
    'pyasn1': ('pyasn1', ('pyasn1.codec.der.decoder', 'pyasn1.codec.der.encoder', 'pyasn1_modules.rfc5280',
                          'pyasn1_modules.rfc2986', 'pyasn1_modules.rfc5652', 'pyasn1_modules.rfc2315')),
    'ldap3': ('ldap3', ('ldap3', 'ldap3.core.exceptions', 'ldap3.protocol.microsoft', 'ldap3.utils.conv')),
    'dnspython': ('dnspython', ('dns.resolver', 'dns.exception')),
    'gssapi': ('gssapi', ('gssapi',)),
}

HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR = _probe(*LIBRARIES['cryptography'][1])
HAS_IMPACKET, IMPACKET_IMPORT_ERROR = _probe(*LIBRARIES['impacket'][1])
HAS_PYASN1, PYASN1_IMPORT_ERROR = _probe(*LIBRARIES['pyasn1'][1])
HAS_LDAP3, LDAP3_IMPORT_ERROR = _probe(*LIBRARIES['ldap3'][1])
HAS_DNSPYTHON, DNSPYTHON_IMPORT_ERROR = _probe(*LIBRARIES['dnspython'][1])
HAS_GSSAPI, GSSAPI_IMPORT_ERROR = _probe(*LIBRARIES['gssapi'][1])

_STATUS = {
    'cryptography': (HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR),
    'impacket': (HAS_IMPACKET, IMPACKET_IMPORT_ERROR),
    'pyasn1': (HAS_PYASN1, PYASN1_IMPORT_ERROR),
    'ldap3': (HAS_LDAP3, LDAP3_IMPORT_ERROR),
    'dnspython': (HAS_DNSPYTHON, DNSPYTHON_IMPORT_ERROR),
    'gssapi': (HAS_GSSAPI, GSSAPI_IMPORT_ERROR),
}


def _known(name):
    if name not in _STATUS:
        raise KeyError('unknown optional library %r (one of %s)' % (name, ', '.join(sorted(_STATUS))))
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
