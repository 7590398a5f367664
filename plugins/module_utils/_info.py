# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-only directory modules' run: one job, checking the libraries the connection options need, connecting
to the directory from the module parameters (``_auth``), running one report on the connection and ending the module
with its result (changed=false) or a clean failure (wcce_template_info, wcce_ca_info)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _deps
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError


def check_libraries(module):
    """Fail the module when a library the connection options need does not import."""
    _deps.check(module, 'ldap3', 'cryptography')
    if not module.params.get('domain_controller'):
        _deps.check(module, 'dnspython', reason='to find a domain controller (or set domain_controller)')
    if module.params.get('auth') == 'kerberos':
        _deps.check(module, 'gssapi', reason='for auth=kerberos')


def run_report(module, report, what):
    """Exit ``module`` with ``report(conn, module.params)`` (a dict) read over a connection from its parameters;
    ``what`` names the read in the message of an unexpected error."""
    check_libraries(module)
    try:
        conn = _auth.ldap_connect(module.params)
    except AdcsError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = report(conn, module.params)
    except AdcsError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # never a bare traceback to the user
        module.fail_json(msg='unexpected error reading %s: %s' % (what, exc), exception=traceback.format_exc())
    finally:
        conn.close()
    module.exit_json(changed=False, **result)
