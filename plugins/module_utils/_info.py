# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-only directory modules' run: one job, checking the libraries the connection options need, connecting
to the directory from the module parameters, running one report on the connection and ending the module with its
result (changed=false) or a clean failure (wcce_template_info, wcce_ca_info)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils._discovery import HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.adcs.enrollment.plugins.module_utils._options import connection_params


def check_libraries(module):
    """Fail the module when a library the connection options need does not import."""
    if not _ldap.HAS_LDAP3:
        module.fail_json(msg=missing_required_lib('ldap3'), exception=_ldap.LDAP3_IMPORT_ERROR)
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    if not module.params.get('domain_controller') and not _ldap.HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib('dnspython', reason='to find a domain controller (or set domain_controller)'),
                         exception=_ldap.DNSPYTHON_IMPORT_ERROR)
    if module.params.get('auth') == 'kerberos' and not _ldap.HAS_GSSAPI:
        module.fail_json(msg=missing_required_lib('gssapi', reason='for auth=kerberos'), exception=_ldap.GSSAPI_IMPORT_ERROR)


def run_report(module, report, what):
    """Exit ``module`` with ``report(conn, module.params)`` (a dict) read over a connection from its parameters;
    ``what`` names the read in the message of an unexpected error."""
    check_libraries(module)
    try:
        conn = _ldap.AdConnection(_ldap.LdapSettings.from_params(connection_params(module.params)))
        conn.connect()
    except _ldap.LdapError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = report(conn, module.params)
    except _ldap.LdapError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # never a bare traceback to the user
        module.fail_json(msg='unexpected error reading %s: %s' % (what, exc), exception=traceback.format_exc())
    finally:
        conn.close()
    module.exit_json(changed=False, **result)
