# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_trust_anchors: the module's sorting of CA certificates for a trust store (the real _anchors code runs; AD is
an in-memory directory behind a fake AdConnection)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _deps, _ldap  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.modules import wcce_trust_anchors  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.anchors import FakeDirectory, leaf, rogue_pki  # noqa: E402

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def pem(*certs):
    return b''.join(c.public_bytes(PEM) for c in certs).decode('ascii')


def run(args):
    return run_module(wcce_trust_anchors.main, args)


def test_author_certificates_sorted_and_non_ca_refused():
    pki = wcce_pki.pki()
    out = run({'certificates': [{'name': 'corp', 'content': pem(pki.ca, pki.root)}]})
    assert not out.failed and out.result['changed'] is False
    [root] = out.result['roots']
    [issuing] = out.result['intermediates']
    assert root['subject'] == 'CN=LAB Root CA' and root['source'] == 'certificates'
    assert root['file'] == 'corp-%s.crt' % _anchors.fingerprint(pki.root).replace(':', '').lower()[:16]
    assert root['pem'] == pki.root.public_bytes(PEM).decode('ascii')
    assert issuing['subject'] == 'CN=LAB-CA'
    out = run({'certificates': [{'name': 'bad', 'content': pem(pki.root, leaf())}]})
    assert out.failed
    assert out.result['msg'] == ('trust certificate "bad": "CN=host.lab.adcs.test" (SHA-256 %s): not a CA '
                                 'certificate (basicConstraints CA:TRUE is missing); it is never installed into a '
                                 'trust store.' % _anchors.fingerprint(leaf()))


def test_host_files_only_with_independent_anchors():
    pki = wcce_pki.pki()
    rogue_root = rogue_pki()[0]
    host = [{'name': 'web', 'content': pem(pki.ca, pki.root, rogue_root)}]
    out = run({'host_certificates': host})
    assert out.failed and out.result['msg'].startswith(
        'CA certificates from files on the managed host are installed only when they are among independently '
        'verified anchors, and none is configured: Active Directory is not used')
    out = run({'host_certificates': host, 'ca_fingerprint': [_anchors.fingerprint(pki.root)]})
    assert not out.failed
    assert [r['subject'] for r in out.result['roots']] == ['CN=LAB Root CA']
    assert out.result['roots'][0]['fingerprint_sha256'] == _anchors.fingerprint(pki.root)
    assert [r['subject'] for r in out.result['intermediates']] == ['CN=LAB-CA']
    assert out.result['refused'] == [{
        'name': 'web', 'file': 'web-%s.crt' % _anchors.fingerprint(rogue_root).replace(':', '').lower()[:16],
        'subject': 'CN=LAB Root CA', 'sha256_fingerprint': _anchors.fingerprint(rogue_root),
        'fingerprint_sha256': _anchors.fingerprint(rogue_root),
        'not_after': rogue_root.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ'), 'source': 'host',
        'ca_cert_index': None, 'ca_key_index': None,
        'reason': 'not among the independently verified anchors (ca_fingerprint)'}]
    assert out.warnings == ['Not installed: web "CN=LAB Root CA" (SHA-256 %s): not among the independently '
                            'verified anchors (ca_fingerprint)' % _anchors.fingerprint(rogue_root)]


def test_certificates_with_verify_are_host_certificates():
    """The trust role passes every source in ``certificates``; ``verify`` marks the host files and chain files."""
    pki = wcce_pki.pki()
    rogue_root = rogue_pki()[0]
    entries = [{'name': 'corp', 'content': pem(pki.root)}, {'name': 'web', 'content': pem(pki.ca, pki.root, rogue_root),
                                                            'verify': True}]
    out = run({'certificates': entries})
    assert out.failed and out.result['msg'].startswith(
        'CA certificates from files on the managed host are installed only when they are among independently')
    out = run({'certificates': entries, 'ca_fingerprint': [_anchors.fingerprint(pki.root)]})
    assert not out.failed, out.result
    assert [(r['name'], r['source']) for r in out.result['roots']] == [('corp', 'certificates')]
    assert [(r['name'], r['subject'], r['source']) for r in out.result['intermediates']] == [
        ('web', 'CN=LAB-CA', 'host')]
    assert [(r['name'], r['subject']) for r in out.result['refused']] == [('web', 'CN=LAB Root CA')]


class FakeAd(object):
    directory = None

    def __init__(self, settings):
        self.settings = settings

    def connect(self):
        conn = FakeAd.directory
        conn.closed = False
        conn.close = lambda: setattr(conn, 'closed', True)
        return conn


@pytest.fixture
def fake_ad(monkeypatch):
    pki = wcce_pki.pki()
    FakeAd.directory = FakeDirectory({
        'CN=Certification Authorities': [pki.root.public_bytes(DER), rogue_pki()[1].public_bytes(DER)],
        'CN=Enrollment Services': [pki.ca.public_bytes(DER)],
        'CN=AIA': [], 'CN=NTAuthCertificates': [pki.ca.public_bytes(DER)],
    })
    monkeypatch.setattr(_ldap, 'AdConnection', FakeAd)
    monkeypatch.setitem(_deps._STATUS, 'ldap3', (True, None))
    return FakeAd.directory


def test_from_ad_roots_of_certification_authorities_and_issuing_cas(fake_ad):
    pki = wcce_pki.pki()
    conn = {'domain': 'lab.adcs.test', 'username': 'u@lab.adcs.test', 'password': 'pw'}
    out = run(dict(conn, from_ad=True))
    assert not out.failed, out.result
    # the root (not the non-self-signed certificate someone put there) is the anchor; the enterprise CA is an
    # intermediate, named by its enrollment service
    assert [(r['name'], r['subject'], r['source']) for r in out.result['roots']] == [
        ('LAB Root CA', 'CN=LAB Root CA', 'Active Directory')]
    assert [(r['subject'], r['source']) for r in out.result['intermediates']] == [('CN=LAB-CA', 'Active Directory')]
    assert fake_ad.closed is True
    assert out.result['roots'][0]['fingerprint_sha256'] == _anchors.fingerprint(pki.root)
    # AD over an unverified connection is refused, and not even read
    fake_ad.searches[:] = []
    out = run(dict(conn, from_ad=True, validate_certs=False))
    assert out.failed and out.result['msg'] == (
        "Reading the CA certificates from Active Directory needs a verified connection: validate_certs=false: the "
        "domain controller's TLS certificate is not verified. What to do: Use ldap_scheme=ldaps or starttls with "
        "validate_certs=true (and ca_bundle when the system trust store does not know the CA of the domain "
        "controller).")
    assert fake_ad.searches == []


def test_pins_take_precedence_over_the_directory_for_enrollment(fake_ad, tmp_path):
    """wcce_request's anchors: with ca_bundle or ca_fingerprint AD is not read for anchors."""
    bundle = str(tmp_path / 'root.pem')
    with open(bundle, 'w') as handle:
        handle.write(pem(wcce_pki.pki().root))
    source = _anchors.AnchorSource.from_params({'domain': 'lab', 'ca_bundle': bundle},
                                               connect_directory=lambda: fake_ad)
    assert source.load().sources == ['ca_bundle %s' % bundle] and fake_ad.searches == []
    source = _anchors.AnchorSource.from_params({'domain': 'lab', 'ca_bundle': bundle},
                                               connect_directory=lambda: fake_ad, directory_always=True)
    assert source.load().sources == ['ca_bundle %s' % bundle, 'Active Directory (CN=Certification Authorities)']


def test_from_ad_installs_only_directory_roots_not_the_bundle(fake_ad, tmp_path):
    """ca_bundle verifies LDAPS (and vouches for host files); from_ad adds only what CN=Certification Authorities
    holds, and with ca_fingerprint only the pinned roots of it."""
    pki = wcce_pki.pki()
    other_root = rogue_pki()[0]
    bundle = str(tmp_path / 'bundle.pem')
    with open(bundle, 'w') as handle:
        handle.write(pem(other_root))
    conn = {'domain': 'lab.adcs.test', 'username': 'u@lab.adcs.test', 'password': 'pw', 'ca_bundle': bundle}
    out = run(dict(conn, from_ad=True))
    assert not out.failed, out.result
    assert [r['fingerprint_sha256'] for r in out.result['roots']] == [_anchors.fingerprint(pki.root)]
    out = run(dict(conn, from_ad=True, ca_fingerprint=[_anchors.fingerprint(other_root)]))
    assert not out.failed and out.result['roots'] == []
    out = run(dict(conn, from_ad=True, ca_names=['nope']))
    assert not out.failed and out.result['roots'] == [] and out.result['intermediates'] == []
