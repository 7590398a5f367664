# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors as e

CATEGORY_CLASS = {
    e.CAT_DENIED: e.RequestDenied,
    e.CAT_AUTH: e.AuthenticationError,
    e.CAT_ACCESS: e.AccessDenied,
    e.CAT_UNAVAILABLE: e.CaUnavailable,
    e.CAT_TRANSPORT: e.TransportError,
    e.CAT_REQUEST: e.BadRequest,
    e.CAT_NOT_FOUND: e.NotFound,
    e.CAT_GENERIC: e.WcceError,
}


@pytest.mark.parametrize('code', e.known_codes())
def test_every_table_entry_is_complete(code):
    info = e.describe_hresult(code)
    assert info.code == code
    assert info.name and info.name.upper() == info.name and ' ' not in info.name
    assert info.meaning.endswith('.')
    assert info.remedy


@pytest.mark.parametrize('code', e.known_codes())
def test_every_table_entry_maps_to_its_exception(code):
    exc = e.exception_for_hresult(code, summary='Enrolling failed', request_id=42)
    assert exc.__class__ is CATEGORY_CLASS[e.error_category(code)]
    msg = exc.to_message()
    info = e.describe_hresult(code)
    assert '0x%08X' % code in msg
    assert info.name in msg
    assert info.meaning.rstrip('.') in msg
    assert 'request ID 42' in msg
    assert info.remedy in msg
    assert str(exc) == msg
    d = exc.to_dict()
    assert d['hresult'] == '0x%08X' % code and d['error_name'] == info.name and d['request_id'] == 42


def test_certsrv_range_covered():
    names = set(e.describe_hresult(c).name for c in e.known_codes())
    for n in ('CERTSRV_E_TEMPLATE_DENIED', 'CERTSRV_E_ENROLL_DENIED', 'CERTSRV_E_UNSUPPORTED_CERT_TYPE',
              'CERTSRV_E_KEY_LENGTH', 'CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE', 'CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED',
              'E_ACCESSDENIED', 'E_INVALIDARG', 'RPC_S_SEC_PKG_ERROR', 'RPC_S_SERVER_UNAVAILABLE',
              'RPC_E_ACCESS_DENIED', 'E_NOINTERFACE'):
        assert n in names
    # the whole contiguous CERTSRV_E_ ranges 0x80094001-0x80094013 and 0x80094800-0x80094817
    for c in list(range(0x80094001, 0x80094014)) + list(range(0x80094800, 0x80094818)):
        assert e.describe_hresult(c).name.startswith('CERTSRV_E_'), hex(c)


def test_signed_negative_code_is_normalized():
    assert e.describe_hresult(-2146877422).name == 'CERTSRV_E_TEMPLATE_DENIED'
    assert e.exception_for_hresult(-2146877422).hresult == 0x80094012


@pytest.mark.parametrize('win32, name', [(5, 'E_ACCESSDENIED'), (0x721, 'RPC_S_SEC_PKG_ERROR'),
                                         (0x6BA, 'RPC_S_SERVER_UNAVAILABLE'), (0x52E, 'ERROR_LOGON_FAILURE')])
def test_bare_win32_codes(win32, name):
    info = e.describe_hresult(win32)
    assert info.name == name and info.code == win32
    assert e.hresult_from_win32(win32) == 0x80070000 | win32


def test_nca_status():
    info = e.describe_hresult(0x1C010003)
    assert info.name == 'NCA_S_UNK_IF'
    assert isinstance(e.exception_for_hresult(0x1C010003), e.TransportError)


def test_unknown_hresult_and_status():
    info = e.describe_hresult(0x80091234)
    assert info.name == 'HRESULT_0x80091234' and 'FACILITY_SECURITY' in info.meaning
    info = e.describe_hresult(0x1234)
    assert info.name == 'STATUS_0x1234'
    exc = e.exception_for_hresult(0x80091234, default_class=e.RequestDenied)
    assert exc.__class__ is e.RequestDenied


def test_zero_and_none():
    assert e.describe_hresult(0).name == 'S_OK'
    assert e.describe_hresult(None).name == 'UNKNOWN'
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


def test_dispositions():
    assert e.CR_DISP_ISSUED == 3 and e.CR_DISP_UNDER_SUBMISSION == 5 and e.CR_DISP_DENIED == 2
    assert e.disposition_name(3) == 'issued'
    assert e.disposition_name(5) == 'pending'
    assert e.disposition_name(0x80094012) == 'error'
    assert e.disposition_name(77) == 'unknown(77)'
    assert e.disposition_name(None) == 'unknown'
