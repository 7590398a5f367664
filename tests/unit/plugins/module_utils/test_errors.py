# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors as e
from ansible_collections.adcs.enrollment.plugins.module_utils import _hresults as h

CATEGORY_CLASS = {
    h.CAT_DENIED: e.RequestDenied,
    h.CAT_AUTH: e.AuthenticationError,
    h.CAT_ACCESS: e.AccessDenied,
    h.CAT_UNAVAILABLE: e.CaUnavailable,
    h.CAT_TRANSPORT: e.TransportError,
    h.CAT_REQUEST: e.BadRequest,
    h.CAT_NOT_FOUND: e.NotFound,
    h.CAT_GENERIC: e.WcceError,
}


@pytest.mark.parametrize('code', h.known_codes())
def test_every_table_entry_maps_to_its_exception(code):
    exc = e.exception_for_hresult(code, summary='Enrolling failed', request_id=42)
    assert exc.__class__ is CATEGORY_CLASS[h.error_category(code)]
    msg = exc.to_message()
    info = h.describe_hresult(code)
    assert '0x%08X' % code in msg
    assert info.name in msg
    assert info.meaning.rstrip('.') in msg
    assert 'request ID 42' in msg
    assert info.remedy in msg
    assert str(exc) == msg
    d = exc.to_dict()
    assert d['hresult'] == '0x%08X' % code and d['error_name'] == info.name and d['request_id'] == 42


def test_signed_negative_code_is_normalized():
    assert h.describe_hresult(-2146877422).name == 'CERTSRV_E_TEMPLATE_DENIED'
    assert e.exception_for_hresult(-2146877422).hresult == 0x80094012


@pytest.mark.parametrize('win32, name', [(5, 'E_ACCESSDENIED'), (0x721, 'RPC_S_SEC_PKG_ERROR'),
                                         (0x6BA, 'RPC_S_SERVER_UNAVAILABLE'), (0x52E, 'ERROR_LOGON_FAILURE')])
def test_bare_win32_codes(win32, name):
    info = h.describe_hresult(win32)
    assert info.name == name and info.code == win32
    assert h.hresult_from_win32(win32) == 0x80070000 | win32


def test_nca_status():
    info = h.describe_hresult(0x1C010003)
    assert info.name == 'NCA_S_UNK_IF'
    assert isinstance(e.exception_for_hresult(0x1C010003), e.TransportError)


def test_unknown_hresult_and_status():
    info = h.describe_hresult(0x80091234)
    assert info.name == 'HRESULT_0x80091234' and 'FACILITY_SECURITY' in info.meaning
    info = h.describe_hresult(0x1234)
    assert info.name == 'STATUS_0x1234'
    exc = e.exception_for_hresult(0x80091234, default_class=e.RequestDenied)
    assert exc.__class__ is e.RequestDenied


def test_zero_and_none():
    assert h.describe_hresult(0).name == 'S_OK'
    assert h.describe_hresult(None).name == 'UNKNOWN'
    exc = e.WcceError('Plain failure')
    assert exc.to_message() == 'Plain failure.'
    assert exc.to_dict()['hresult'] is None


def test_explicit_remedy_and_detail():
    exc = e.RequestPending(request_id=9, detail='Taken Under Submission', remedy='Wait for approval.')
    assert exc.to_message() == ('The certificate request is pending approval by a certificate manager; request ID 9; '
                                'Taken Under Submission. What to do: Wait for approval.')


def test_hierarchy():
    assert issubclass(e.CaUnavailable, e.TransportError)
    assert e.ConnectionError_ is e.TransportError
    for cls in (e.AuthenticationError, e.AccessDenied, e.TransportError, e.RequestDenied, e.BadRequest,
                e.NotFound, e.RequestPending, e.InvalidInput, e.CertificateError, e.FileOutputError):
        assert issubclass(cls, e.WcceError)


def test_one_root():
    """Every exception root of plugins/ derives from AdcsError; WcceError is its subclass, so ``except WcceError``
    catches what it caught before (not the LDAP/CRL/template errors), ``except AdcsError`` catches everything."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_http, _crl_job, _crl_validate, _ldap
    from ansible_collections.adcs.enrollment.plugins.module_utils import _security
    from ansible_collections.adcs.enrollment.plugins.module_utils import _templates
    assert issubclass(e.WcceError, e.AdcsError)
    for cls in (_ldap.LdapError, _crl_http.FetchError, _crl_job.JobError, _crl_validate.CrlError,
                _templates.TemplateDecodeError,
                _security.SecurityDescriptorError, e.KerberosFailure, e.MissingLibrary, e.DnsError):
        assert issubclass(cls, e.AdcsError), cls
    for cls in (_ldap.LdapError, _crl_http.FetchError, _crl_validate.CrlError, e.DnsError):
        assert not issubclass(cls, e.WcceError), cls
    assert issubclass(e.KerberosFailure, e.AuthenticationError)
    # the ValueError roots stay ValueErrors for their callers
    assert issubclass(_templates.TemplateDecodeError, ValueError)
    assert issubclass(_security.SecurityDescriptorError, ValueError)


def test_adcs_error_keeps_its_message():
    from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_job, _ldap
    exc = _ldap.LdapError('no domain controller found: nothing')
    assert str(exc) == exc.to_message() == 'no domain controller found: nothing'
    assert exc.to_dict() == {'hresult': None, 'error_name': None, 'meaning': None, 'request_id': None, 'remedy': None}
    job = _crl_job.JobError('no CRL', tried=['http://x'])
    assert str(job) == 'no CRL' and job.tried == ['http://x']
    missing = e.MissingLibrary('Failed to import ldap3', library='ldap3', import_error='tb')
    assert str(missing) == 'Failed to import ldap3' and missing.library == 'ldap3'
