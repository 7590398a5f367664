# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_info: the run of the read-only directory modules (libraries, connection, one report, clean failures); the module
tests of wcce_template_info and wcce_ca_info run it against an in-memory directory."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('ldap3')

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps, _info
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import LdapError
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import (
    connection_argument_spec, connection_module_kwargs,
)
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap_directory import Directory, install_directory
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module

CONN = {'domain': 'lab.adcs.test', 'domain_controller': 'dc1.lab.adcs.test', 'username': 'enroller', 'password': 'pw'}


def module_with(report):
    def main():
        module = AnsibleModule(argument_spec=connection_argument_spec(), supports_check_mode=True,
                               **connection_module_kwargs())
        _info.run_report(module, report, 'the test data')
    return main


def test_report_result_and_the_connection_closed(monkeypatch):
    install_directory(monkeypatch, Directory())
    seen = []

    def report(conn, params):
        seen.append(conn)
        return {'host': conn.host, 'user': params['username']}
    out = run_module(module_with(report), CONN)
    assert not out.failed and out.result == {'changed': False, 'host': 'dc1.lab.adcs.test', 'user': 'enroller'}
    assert seen[0].conn is None  # closed


def test_failures_are_clean(monkeypatch):
    install_directory(monkeypatch, Directory())

    def ldap_error(conn, params):
        raise LdapError('size limit')

    def bug(conn, params):
        raise KeyError('x')
    out = run_module(module_with(ldap_error), CONN)
    assert out.failed and out.result == {'msg': 'size limit'}
    out = run_module(module_with(bug), CONN)
    assert out.failed and out.result['msg'] == "unexpected error reading the test data: 'x'"
    assert 'Traceback' in out.result['exception']
    monkeypatch.setitem(_deps._STATUS, 'dnspython', (False, 'Traceback'))
    out = run_module(module_with(bug), dict(CONN, domain_controller=None))
    assert out.failed and 'dnspython' in out.result['msg']
