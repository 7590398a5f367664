# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, MissingLibrary
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.subproc import run_python


class FakeModule(object):
    def __init__(self):
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(1)


def test_the_test_environment_has_every_library():
    for name in _deps.LIBRARIES:
        assert _deps.available(name), name
        assert _deps.import_error(name) is None
    assert _deps.HAS_CRYPTOGRAPHY and _deps.HAS_IMPACKET and _deps.HAS_PYASN1 and _deps.HAS_LDAP3
    assert _deps.HAS_DNSPYTHON and _deps.HAS_GSSAPI


def test_impacket_probe_leaves_the_rpc_runtime_and_kerberos_alone():
    """Probing impacket (every enrollment asks) imports its NDR structures only; Kerberos is probed on its own."""
    code = ('import sys\n'
            'from ansible_collections.adcs.enrollment.plugins.module_utils import _deps\n'
            'assert _deps.HAS_IMPACKET\n'
            'print(sorted(m for m in sys.modules if m.startswith(("impacket.krb5", "impacket.dcerpc.v5.rpcrt", '
            '"impacket.dcerpc.v5.dcomrt", "impacket.ntlm", "Cryptodome"))))\n'
            'assert _deps.HAS_IMPACKET_KERBEROS\n'
            'print("impacket.krb5.kerberosv5" in sys.modules)\n')
    out = run_python(code)
    assert out.split() == ['[]', 'True'], out


def test_probe_records_the_traceback():
    assert _deps._probe('json', 'os.path') == (True, None)
    has, error = _deps._probe('json', 'adcs_no_such_module_for_tests')
    assert has is False and 'adcs_no_such_module_for_tests' in error and 'Traceback' in error


def test_missing_is_ansibles_text():
    text = _deps.missing('gssapi', reason='for auth=kerberos')
    assert 'gssapi' in text and 'for auth=kerberos' in text
    assert 'dnspython' in _deps.missing('dnspython')     # the pip name, not the import name


def test_require_raises_an_adcs_error(monkeypatch):
    _deps.require('ldap3')      # available: nothing happens
    monkeypatch.setitem(_deps._STATUS, 'ldap3', (False, 'Traceback: boom'))
    with pytest.raises(MissingLibrary) as info:
        _deps.require('ldap3', reason='to read Active Directory')
    assert isinstance(info.value, AdcsError)
    assert info.value.library == 'ldap3' and info.value.import_error == 'Traceback: boom'
    assert 'ldap3' in str(info.value) and 'to read Active Directory' in str(info.value)


def test_check_fails_the_module_with_the_traceback(monkeypatch):
    module = FakeModule()
    _deps.check(module, 'cryptography', 'impacket')
    assert module.failed is None
    monkeypatch.setitem(_deps._STATUS, 'impacket', (False, 'Traceback: no impacket'))
    with pytest.raises(SystemExit):
        _deps.check(module, 'cryptography', 'impacket', 'ldap3')
    assert 'impacket' in module.failed['msg'] and module.failed['exception'] == 'Traceback: no impacket'


def test_unknown_library_is_a_programming_error():
    with pytest.raises(KeyError):
        _deps.available('openssl')
