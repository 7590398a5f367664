# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_crl end to end (main()) against a local HTTP server on 127.0.0.73, a fake directory and a fake CA."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import stat

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_fetch  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.modules import wcce_crl  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_web import Server  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402

ADDR = '127.0.0.73'
CA = P.Ca('UNIT-CA', key_name='unit')
HOUR = datetime.timedelta(hours=1)


class Web(Server):
    """The PKI web server of the unit tests, named pki.unit.test (host_addresses maps it to ADDR)."""

    def __init__(self):
        Server.__init__(self, ADDR)

    def url(self, path):
        return 'http://pki.unit.test:%d%s' % (self.port, path)

    def publish(self, number, revoked=(), delta_revoked=(), **kwargs):
        now = datetime.datetime.now(datetime.timezone.utc)
        base = CA.crl(number=number, revoked=revoked, freshest=[self.url('/unit+.crl')], this_update=now - HOUR,
                      next_update=now + 24 * HOUR, **kwargs)
        delta = CA.crl(number=number + 1, delta_of=number, revoked=delta_revoked, this_update=now - HOUR,
                       next_update=now + 24 * HOUR)
        self.files['/unit.crl'] = P.der(base)
        self.files['/unit+.crl'] = P.der(delta)
        self.files['/ca.crt'] = CA.der
        return base, delta


@pytest.fixture
def web():
    w = Web()
    w.publish(10)
    yield w
    w.close()


def run(args, check_mode=False):
    return run_module(wcce_crl.main, args, check_mode=check_mode)


def base_args(web, **extra):
    args = {'host_addresses': {'pki.unit.test': ADDR}, 'use_proxy': False}
    args.update(extra)
    return args


@pytest.fixture
def leaf_path(web, tmp_path):
    leaf = CA.leaf(serial=0xBEEF, cdp=[web.url('/missing.crl'), web.url('/unit.crl')], aia=[web.url('/ca.crt')])
    path = tmp_path / 'leaf.pem'
    path.write_bytes(leaf.public_bytes(Encoding.PEM))
    return str(path)


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / 'bundle.pem'
    path.write_bytes(P.Ca('OTHER-CA', key_name='other').pem + CA.pem)
    return str(path)


def test_from_certificate_with_status(web, leaf_path, bundle):
    web.publish(20, revoked=[(0x1, None, None)],
                delta_revoked=[(0xBEEF, x509.ReasonFlags.key_compromise, P.NOW)])
    out = run(base_args(web, certificate_path=leaf_path, check_certificate=True, include_entries=True,
                        ca_bundle=bundle))
    assert not out.failed, out.result
    r = out.result
    assert r['changed'] is False and r['issuer'] == 'CN=UNIT-CA,DC=test' and r['crl_number'] == 20
    assert r['served_by'] == web.url('/unit.crl') and r['issuer_certificate_source'] == web.url('/ca.crt')
    assert r['revoked_count'] == 1 and r['entries'][0]['serial_number'] == '1'
    assert r['delta']['crl_number'] == 21 and r['delta']['base_crl_number'] == 20
    assert r['delta']['served_by'] == web.url('/unit+.crl') and r['delta']['entries'][0]['serial_number'] == 'BEEF'
    assert r['revoked'] is True
    assert r['certificate_status'] == {'serial_number': 'BEEF', 'revoked': True, 'reason': 'keyCompromise',
                                       'reason_code': 1, 'revocation_date': '2026-11-28T12:00:00Z', 'source': 'delta',
                                       'on_hold': False}
    assert [(t['kind'], t['ok']) for t in r['urls_tried']] == [('issuer', True), ('base', False), ('base', True),
                                                               ('delta', True)]
    assert 'HTTP 404' in r['urls_tried'][1]['error']
    assert web.connections == 1     # AIA, two CDPs and the delta over one connection


def test_not_revoked(web, leaf_path, bundle):
    out = run(base_args(web, certificate_path=leaf_path, check_certificate=True, ca_bundle=bundle))
    assert out.result['revoked'] is False and out.result['certificate_status']['reason'] is None


def test_issuer_from_aia_needs_a_trust_anchor(web, leaf_path, tmp_path):
    out = run(base_args(web, certificate_path=leaf_path, check_certificate=True))     # system store: not there
    assert out.failed
    assert out.result['msg'] == (
        'the issuing CA certificate of "CN=UNIT-CA,DC=test" could not be obtained from its AIA (%s: the CA '
        'certificate "CN=UNIT-CA,DC=test" is not trusted: it neither is nor was issued by a CA certificate of '
        'ca_bundle (or, without ca_bundle, of the system trust store)): set issuer_certificate, or ca_bundle to the '
        'CA certificates it must chain to' % web.url('/ca.crt'))
    assert 'revoked' not in out.result
    missing = str(tmp_path / 'missing.pem')
    out = run(base_args(web, certificate_path=leaf_path, ca_bundle=missing))
    assert out.failed and 'Cannot read ca_bundle %s: No such file or directory' % missing in out.result['msg']
    out = run(base_args(web, certificate_path=leaf_path, issuer_certificate=CA.pem.decode()))
    assert not out.failed and out.result['issuer_certificate_source'] == 'given'


def test_dest_written_only_when_crl_number_changes(web, tmp_path):
    dest = tmp_path / 'unit.crl'
    args = base_args(web, urls=[web.url('/unit.crl')], issuer_certificate=CA.pem.decode(), dest=str(dest),
                     mode='0640')
    first = run(args, check_mode=True)
    assert first.result['changed'] is True and not dest.exists()
    first = run(args)
    assert first.result['changed'] is True and first.result['dest'] == str(dest)
    assert v.crl_number(v.load_crl(dest.read_bytes())) == 10 and dest.read_bytes().startswith(b'-----BEGIN X509 CRL')
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o640
    # the same CRL number re-signed (new bytes): not rewritten
    web.publish(10, revoked=[(0x5, None, None)])
    before = dest.read_bytes()
    again = run(args)
    assert again.result['changed'] is False and dest.read_bytes() == before
    assert run(args, check_mode=True).result['changed'] is False
    # a new CRL is written
    web.publish(12)
    newer = run(args)
    assert newer.result['changed'] is True and v.crl_number(v.load_crl(dest.read_bytes())) == 12
    # mode only
    args['mode'] = '0600'
    assert run(args).result['changed'] is True and stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    # another format rewrites
    args['format'] = 'der'
    assert run(args).result['changed'] is True and dest.read_bytes() == web.files['/unit.crl']


def test_older_crl_never_replaces_a_newer_one_unless_forced(web, tmp_path):
    dest, delta_dest = tmp_path / 'unit.crl', tmp_path / 'unit+.crl'
    args = base_args(web, urls=[web.url('/unit.crl')], issuer_certificate=CA.pem.decode(), dest=str(dest),
                     delta_dest=str(delta_dest))
    web.publish(12)
    assert run(args).result['changed'] is True
    newer, newer_delta = dest.read_bytes(), delta_dest.read_bytes()
    web.publish(10)                     # a replayed older CRL (and its delta)
    for check_mode in (True, False):
        out = run(args, check_mode=check_mode)
        assert out.failed
        assert out.result['msg'] == ('%s: the fetched CRL (CRL number 10) is older than the one already there (CRL '
                                     'number 12, same issuer and key); the file is kept (force=true replaces it)'
                                     % dest)
        assert dest.read_bytes() == newer and delta_dest.read_bytes() == newer_delta
    out = run(dict(args, delta_dest=None))
    assert out.failed and 'is older than the one already there' in out.result['msg']
    # the delta file alone is checked too
    out = run(dict(args, dest=None))
    assert out.failed and out.result['msg'].startswith('%s: the fetched CRL (CRL number 11) is older' % delta_dest)
    out = run(dict(args, force=True))
    assert not out.failed and out.result['changed'] is True
    assert v.crl_number(v.load_crl(dest.read_bytes())) == 10
    assert v.crl_number(v.load_crl(delta_dest.read_bytes())) == 11
    # a planted file with a huge number that the CA did not sign does not block the update
    dest.write_bytes(P.pem(CA.crl(number=10 ** 6, signer=P.key('planted'))))
    out = run(dict(args, delta_dest=None))
    assert not out.failed and out.result['changed'] is True and v.crl_number(v.load_crl(dest.read_bytes())) == 10


def test_max_size_option(web):
    out = run(base_args(web, urls=[web.url('/unit.crl')], issuer_certificate=CA.pem.decode(), max_size=100))
    assert out.failed
    assert out.result['urls_tried'][0]['error'] == 'the response is larger than max_size (100 bytes)'
    out = run(base_args(web, urls=[web.url('/unit.crl')], max_size=0))
    assert out.failed and out.result['msg'] == 'max_size must be 1 or more'


def test_delta_dest_and_backup(web, tmp_path):
    dest, delta_dest = tmp_path / 'b.crl', tmp_path / 'd.crl'
    args = base_args(web, urls=[web.url('/unit.crl')], issuer_certificate=CA.pem.decode(), dest=str(dest),
                     delta_dest=str(delta_dest), format='der', backup=True)
    assert run(args).result['changed'] is True
    assert delta_dest.read_bytes() == web.files['/unit+.crl']
    web.publish(14)
    out = run(args)
    assert out.result['changed'] is True and os.path.exists(out.result['backup_file'])


def test_tampered_crl_is_never_written(web, tmp_path):
    dest = tmp_path / 'unit.crl'
    data = bytearray(web.files['/unit.crl'])
    data[-3] ^= 0x55
    web.files['/unit.crl'] = bytes(data)
    out = run(base_args(web, urls=[web.url('/unit.crl')], issuer_certificate=CA.pem.decode(), dest=str(dest)))
    assert out.failed and 'no usable CRL' in out.result['msg'] and 'signature' in out.result['msg']
    assert out.result['urls_tried'][0]['ok'] is False
    assert not dest.exists() and os.listdir(str(tmp_path)) == []


def test_stale_crl_fail_and_warn(web):
    now = datetime.datetime.now(datetime.timezone.utc)
    web.files['/stale.crl'] = P.der(CA.crl(number=3, this_update=now - 48 * HOUR, next_update=now - 24 * HOUR))
    args = base_args(web, urls=[web.url('/stale.crl')], issuer_certificate=CA.pem.decode())
    out = run(args)
    assert out.failed and 'stale' in out.result['msg']
    args['freshness'] = 'warn'
    out = run(args)
    assert not out.failed and out.result['crl_number'] == 3 and 'stale' in out.warnings[0]


def test_option_errors(web, tmp_path):
    out = run(base_args(web))
    assert out.failed and 'one of certificate_path, certificate, urls or from_ca' in out.result['msg']
    out = run(base_args(web, urls=['http://x/y'], check_certificate=True))
    assert out.failed and 'check_certificate' in out.result['msg']
    out = run(base_args(web, urls=['http://x/y'], from_ca=True))
    assert out.failed and 'mutually exclusive' in out.result['msg']
    bad = tmp_path / 'bad.pem'
    bad.write_text('nope')
    out = run(base_args(web, certificate_path=str(bad)))
    assert out.failed and out.result['msg'].startswith('certificate: not a certificate')
    out = run(base_args(web, urls=[web.url('/unit.crl')]))
    assert out.failed and 'set issuer_certificate' in out.result['msg']
    out = run(base_args(web, urls=[web.url('/unit.crl')], issuer_certificate=CA.pem.decode(), max_redirects=-1))
    assert out.failed and 'max_redirects' in out.result['msg']


class FakeConn(object):
    created = []

    def __init__(self, settings):
        self.settings = settings
        FakeConn.created.append(self)

    def connect(self):
        return self

    def search(self, base, flt, attributes, scope='SUBTREE', paged=True):
        return [{'dn': base, 'attributes': {'certificateRevocationList': [FakeConn.crl]}}]

    def close(self):
        pass


def test_ldap_urls_use_the_connection_options(web, monkeypatch):
    FakeConn.created = []
    FakeConn.crl = web.files['/unit.crl']
    monkeypatch.setattr(_ldap, 'AdConnection', FakeConn)
    url = 'ldap:///CN=UNIT-CA,CN=CDP,DC=test?certificateRevocationList?base?objectClass=cRLDistributionPoint'
    out = run(base_args(web, urls=[url, 'ldap://dc9.unit.test/CN=UNIT-CA,DC=test?certificateRevocationList'],
                        delta=False, issuer_certificate=CA.pem.decode(), domain='unit.test',
                        domain_controller='dc1.unit.test', username='u', password='p'))
    assert not out.failed, out.result
    assert out.result['served_by'] == url and len(FakeConn.created) == 1
    settings = FakeConn.created[0].settings
    assert settings.domain_controller == 'dc1.unit.test' and settings.username == 'u'


class FakeCaSession(object):
    """Stands for _ca_session.CaSession: records how it was made, answers GetCAProperty from ``answers``."""
    made = []
    answers = {}

    def __init__(self, host, name, auth=None, timeout=30, address=None):
        self.host, self.name, self.auth, self.timeout, self.address = host, name, auth, timeout, address
        self.client = None
        self.closed = False
        FakeCaSession.made.append(self)

    def open(self):
        self.client = self
        return self

    def get_ca_property(self, prop_id, index=0, prop_type=None):
        return FakeCaSession.answers[prop_id]

    def close(self):
        self.closed = True


@pytest.fixture
def fake_ca(web, monkeypatch):
    base, delta = web.publish(30)
    FakeCaSession.made = []
    FakeCaSession.answers = {0x0B: 1, 0x11: P.der(base), 0x12: P.der(delta), 0x0C: CA.der}
    monkeypatch.setattr(_crl_fetch, 'CaSession', FakeCaSession)
    return FakeCaSession


def test_from_ca(fake_ca):
    out = run({'from_ca': True, 'ca_host': 'ca1.unit.test', 'ca_name': 'UNIT-CA', 'domain': 'unit.test',
               'username': 'u', 'password': 'p', 'host_addresses': {'CA1.unit.test': '127.0.0.9'}})
    assert not out.failed, out.result
    assert out.result['crl_number'] == 30 and out.result['delta']['crl_number'] == 31
    assert out.result['served_by'] == 'dcom://ca1.unit.test/UNIT-CA (base CRL)'
    assert out.result['issuer_certificate_source'] == 'dcom://ca1.unit.test/UNIT-CA'
    session, = fake_ca.made
    assert (session.host, session.name, session.address) == ('ca1.unit.test', 'UNIT-CA', '127.0.0.9')
    assert session.auth.kind == 'password' and session.auth.user == 'u' and session.auth.domain == 'unit.test'
    assert session.closed


def test_from_ca_with_kerberos_keytab_and_ccache(fake_ca, tmp_path):
    """Issue 13 drift: from_ca dropped kerberos_keytab, kerberos_ccache and domain_controller; the one adapter
    (_auth.dcom_auth) passes them all to the CA session."""
    keytab, ccache = str(tmp_path / 'crl.keytab'), str(tmp_path / 'krb5cc_crl')
    out = run({'from_ca': True, 'ca_host': 'ca1.unit.test', 'ca_name': 'UNIT-CA', 'domain': 'unit.test',
               'domain_controller': 'dc1.unit.test', 'auth': 'kerberos', 'username': 'svc-crl',
               'kerberos_keytab': keytab, 'kerberos_ccache': ccache})
    assert not out.failed, out.result
    session, = fake_ca.made
    auth = session.auth
    assert auth.kind == 'kerberos' and auth.user == 'svc-crl' and auth.domain == 'unit.test'
    assert (auth.keytab, auth.ccache) == (keytab, ccache)
    assert auth.kdc_host == 'dc1.unit.test' and auth.dns_server == 'dc1.unit.test'
    assert session.host == 'ca1.unit.test'       # the CA's DNS name names the service ticket
