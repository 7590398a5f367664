# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_anchors: trust anchors from ca_bundle, ca_fingerprint or verified AD, never from the CA session; the path check."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _errors, _plan

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.anchors import (
    FakeDirectory,
    leaf,
    rogue_pki,
    write_pem,
)
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import FakeClient, enroller, spec

NOW = wcce_pki.NOW
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


# ------------------------------------------------------------------------------------------------------------
# fingerprints and sources
# ------------------------------------------------------------------------------------------------------------
def test_fingerprint_forms():
    root = wcce_pki.pki().root
    colon = _anchors.fingerprint(root)
    assert len(colon) == 95 and colon == colon.upper()
    plain = colon.replace(':', '').lower()
    assert _anchors.normalize_fingerprint(colon) == plain
    assert _anchors.normalize_fingerprint('sha256:' + plain.upper()) == plain
    with pytest.raises(_errors.InvalidInput) as err:
        _anchors.normalize_fingerprint('AB:CD')
    assert err.value.to_message() == ("ca_fingerprint 'AB:CD' is not a SHA-256 fingerprint (64 hexadecimal digits, "
                                      "colons allowed).")


NO_ANCHOR = ('No independent trust anchor for the certificates the CA issues: %s, and neither ca_bundle nor '
             'ca_fingerprint is set; the CA was not contacted. What to do: ' + _anchors.ANCHOR_REMEDY)


@pytest.mark.parametrize('params, why', [
    ({}, 'Active Directory is not used (neither domain nor domain_controller is set)'),
    ({'domain': 'lab', 'validate_certs': False}, "validate_certs=false: the domain controller's TLS certificate is "
                                                 "not verified"),
    ({'domain': 'lab', 'ldap_scheme': 'ldap', 'auth': 'kerberos'},
     'Active Directory is read over ldap_scheme=ldap, which does not protect the results against tampering '
     '(Kerberos and NTLM authenticate only the bind here)'),
])
def test_no_independent_source_fails_before_anything(params, why):
    connects = []
    source = _anchors.AnchorSource.from_params(params, connect_directory=lambda: connects.append(1))
    with pytest.raises(_errors.InvalidInput) as err:
        source.load()
    assert err.value.to_message() == NO_ANCHOR % why
    assert connects == []   # an unverified directory is not even read


def test_bundle_anchors_and_bad_bundles(tmp_path):
    pki = wcce_pki.pki()
    # a non-CA certificate in it is ignored, an issuing CA is an intermediate (the chain goes on to the root)
    path = write_pem(str(tmp_path / 'b.pem'), pki.ca, pki.root, leaf())
    trust = _anchors.AnchorSource(ca_bundle=path).load()
    assert trust.anchors == [pki.root] and trust.intermediates == [pki.ca]
    assert trust.sources == ['ca_bundle %s' % path]
    assert trust.verify(leaf(), [], now=NOW) == [pki.ca, pki.root]
    with pytest.raises(_errors.InvalidInput, match=r'^Cannot read ca_bundle /nonexistent: No such file'):
        _anchors.AnchorSource(ca_bundle='/nonexistent').load()
    empty = str(tmp_path / 'e.pem')
    open(empty, 'w').close()
    with pytest.raises(_errors.InvalidInput, match='ca_bundle .*e.pem holds no certificate'):
        _anchors.AnchorSource(ca_bundle=empty).load()
    only_leaf = write_pem(str(tmp_path / 'l.pem'), leaf())
    with pytest.raises(_errors.InvalidInput) as err:
        _anchors.AnchorSource(ca_bundle=only_leaf).load()
    assert err.value.to_message() == ('No trust anchor found in ca_bundle %s; the CA was not contacted. What to do: '
                                      '%s' % (only_leaf, _anchors.ANCHOR_REMEDY))


def test_directory_roots_are_anchors_and_the_rest_intermediates():
    pki = wcce_pki.pki()
    rogue_root, rogue_ca = rogue_pki()[:2]
    directory = FakeDirectory({
        'CN=Certification Authorities': [pki.root.public_bytes(DER), pki.ca.public_bytes(DER), b'garbage'],
        'CN=Enrollment Services': [pki.ca.public_bytes(DER)],
        'CN=AIA': [pki.ca.public_bytes(DER), leaf().public_bytes(DER)],
        'CN=NTAuthCertificates': [pki.ca.public_bytes(DER)],
    })
    trust = _anchors.AnchorSource.from_params({'domain': 'lab'}, connect_directory=lambda: directory).load()
    # only self-signed CAs of CN=Certification Authorities are anchors; the issuing CA is an intermediate only
    assert trust.anchors == [pki.root]
    assert trust.intermediates == [pki.ca]
    assert ('CN=NTAuthCertificates', 'BASE') in directory.searches
    # the issued certificate verifies with nothing from the CA: AD gave the intermediate
    assert trust.verify(leaf(), [], now=NOW) == [pki.ca, pki.root]
    # the CA's own chain to another root never is an anchor
    with pytest.raises(_errors.CertificateError) as err:
        trust.verify(rogue_pki()[2], [rogue_ca, rogue_root], request_id=7, now=NOW)
    assert err.value.to_message() == (
        'The issued certificate chains to the root CA "CN=LAB Root CA" (SHA-256 %s), which is not a trusted '
        'anchor; nothing was written; request ID 7; trusted anchors from Active Directory (CN=Certification '
        'Authorities): "CN=LAB Root CA" (SHA-256 %s). What to do: If this root is yours, publish it in '
        'CN=Certification Authorities or pin it with ca_bundle or ca_fingerprint; otherwise the CA or its replies '
        'are not genuine.' % (_anchors.fingerprint(rogue_root), _anchors.fingerprint(pki.root)))


def test_directory_read_failure_is_reported():
    def broken():
        raise RuntimeError('socket closed')
    with pytest.raises(_errors.InvalidInput) as err:
        _anchors.AnchorSource.from_params({'domain': 'lab'}, connect_directory=broken).load()
    assert err.value.to_message().startswith('Reading the CA certificates from Active Directory failed; the CA '
                                             'was not contacted; socket closed. What to do: Set ca_fingerprint')


def test_pinned_fingerprint_authenticates_a_certificate_from_anywhere_and_restricts_the_rest(tmp_path):
    pki = wcce_pki.pki()
    rogue_root, rogue_ca, rogue_leaf = rogue_pki()
    bundle = write_pem(str(tmp_path / 'b.pem'), pki.root, rogue_root)
    # pinned: the root the CA sent is accepted because its fingerprint is the pinned one
    trust = _anchors.AnchorSource(ca_fingerprint=[_anchors.fingerprint(pki.root)]).load()
    assert trust.verify(leaf(), [pki.ca, pki.root], now=NOW) == [pki.ca, pki.root]
    # pinning the issuing CA: the path ends there
    trust = _anchors.AnchorSource(ca_fingerprint=[_anchors.fingerprint(pki.ca).lower()]).load()
    assert trust.verify(leaf(), [pki.ca, pki.root], now=NOW) == [pki.ca]
    # a bundle that also holds the rogue root: the pin still only admits the pinned one
    trust = _anchors.AnchorSource(ca_bundle=bundle, ca_fingerprint=[_anchors.fingerprint(pki.root)]).load()
    with pytest.raises(_errors.CertificateError, match='chains to the root CA "CN=LAB Root CA" .SHA-256 %s., which '
                       'is not a trusted anchor' % _anchors.fingerprint(rogue_root)):
        trust.verify(rogue_leaf, [rogue_ca, rogue_root], now=NOW)
    # without a certificate holding a pinned fingerprint there is no anchor at all
    trust = _anchors.AnchorSource(ca_fingerprint=[_anchors.fingerprint(pki.root)]).load()
    with pytest.raises(_errors.CertificateError) as err:
        trust.verify(leaf(), [], request_id=3, now=NOW)
    assert err.value.to_message() == ('No trust anchor to verify the issued certificate with; nothing was written; '
                                      'request ID 3; ca_fingerprint gave no usable CA certificate. What to do: '
                                      + _anchors.ANCHOR_REMEDY)


def test_a_non_ca_certificate_is_never_an_issuer(tmp_path):
    """A CA:FALSE certificate whose key signed the leaf (and that names itself as root) is not a CA."""
    key = wcce_pki.rsa_key('notca')
    fake_root = wcce_pki.make_cert('LAB Root CA', key, ca=False, serial=9, days=3650)
    issued = wcce_pki.make_cert('host', wcce_pki.rsa_key('leaf'), issuer=fake_root, issuer_key=key)
    trust = _anchors.TrustAnchors([fake_root], sources=['test'])
    with pytest.raises(_errors.CertificateError, match='^No trust anchor'):
        trust.verify(issued, [], now=NOW)
    trust = _anchors.TrustAnchors([wcce_pki.pki().root], sources=['test'])
    with pytest.raises(_errors.CertificateError, match='does not chain to a trusted CA certificate.*"CN=host" is '
                                                       'not among the CA certificates'):
        trust.verify(issued, [fake_root], now=NOW)


# ------------------------------------------------------------------------------------------------------------
# the enrollment uses it
# ------------------------------------------------------------------------------------------------------------
class RogueClient(FakeClient):
    """Issues with a rogue CA pair named like the real one and sends that chain in the reply."""

    def _issue(self, public_key_der, rid, csr=None, template='WebServer'):
        root, ca = rogue_pki()[:2]
        pub = serialization.load_der_public_key(public_key_der)
        cert = wcce_pki.make_cert(csr.subject if csr is not None and len(csr.subject) else 'issued',
                                  _PublicOnly(pub), issuer=ca, issuer_key=wcce_pki.ec_key('rogue-ca'))
        from ansible_collections.adcs.enrollment.plugins.module_utils._wcce import EnrollmentResult
        return EnrollmentResult(3, rid, 0, 'Issued', cert.public_bytes(DER),
                                [ca.public_bytes(DER), root.public_bytes(DER)])


class _PublicOnly(object):
    def __init__(self, pub):
        self._pub = pub

    def public_key(self):
        return self._pub


def test_enroller_refuses_a_reply_chain_to_an_unknown_root(tmp_path):
    s = spec(tmp_path, chain_path=str(tmp_path / 'chain.pem'), common_name='a.lab.adcs.test')
    with enroller(RogueClient({})) as e:
        [result] = e.run([s])
    assert result['failed'] and result['request_id'] == 101
    assert result['msg'].startswith('The issued certificate chains to the root CA "CN=LAB Root CA" (SHA-256 %s), '
                                    'which is not a trusted anchor; nothing was written; request ID 101; trusted '
                                    'anchors from ca_fingerprint: "CN=LAB Root CA" (SHA-256 %s).'
                                    % (_anchors.fingerprint(rogue_pki()[0]),
                                       _anchors.fingerprint(wcce_pki.pki().root)))
    assert os.listdir(str(tmp_path)) == []


def test_enroller_without_anchor_source_never_contacts_the_ca(tmp_path):
    client = FakeClient({})
    with enroller(client, anchors=None) as e:
        [result] = e.run([spec(tmp_path)])
        assert e.ca_contacted is False
    assert result['failed'] and client.calls == []
    assert result['msg'] == NO_ANCHOR % 'Active Directory is not used (neither domain nor domain_controller is set)'


def test_enroller_refresh_rebuilds_the_chain_from_anchors_only(tmp_path):
    """ACTION_REFRESH (missing chain file) builds the chain from verified certificates too."""
    pki = wcce_pki.pki()
    key = wcce_pki.rsa_key('refresh')
    cert = pki.issue('r.lab.adcs.test', key, template_name='WebServer')
    with open(str(tmp_path / 'k.pem'), 'wb') as handle:
        handle.write(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_pem(str(tmp_path / 'c.pem'), cert)
    s = spec(tmp_path, chain_path=str(tmp_path / 'chain.pem'))
    bundle = write_pem(str(tmp_path / 'root.pem'), pki.root)
    with enroller(FakeClient({}), anchors=_anchors.AnchorSource(ca_bundle=bundle)) as e:
        [result] = e.run([s])
    assert result['action'] == _plan.ACTION_REFRESH and not result.get('failed'), result
    with open(s['chain_path'], 'rb') as handle:
        assert handle.read() == pki.ca.public_bytes(PEM) + pki.root.public_bytes(PEM)
    # the same with an anchor the CA's chain does not reach: nothing is rewritten
    os.unlink(s['chain_path'])
    other = write_pem(str(tmp_path / 'other.pem'), rogue_pki()[0])
    with enroller(FakeClient({}), anchors=_anchors.AnchorSource(ca_bundle=other)) as e:
        [result] = e.run([s])
    assert result['failed'] and result['msg'].startswith(
        'The issued certificate chains to the root CA "CN=LAB Root CA" (SHA-256 %s), which is not a trusted anchor'
        % _anchors.fingerprint(pki.root))
    assert not os.path.exists(s['chain_path'])


# ------------------------------------------------------------------------------------------------------------
# the CA path verified once per run
# ------------------------------------------------------------------------------------------------------------
def _counting_signatures(monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
    checked = []
    real = _chain.signature_valid

    def counted(cert, issuer):
        checked.append(cert.subject.rfc4514_string())
        return real(cert, issuer)

    monkeypatch.setattr(_chain, 'signature_valid', counted)
    return checked


def test_the_ca_path_is_verified_once_and_each_leaf_against_it(monkeypatch):
    import datetime
    pki = wcce_pki.pki()
    trust = _anchors.TrustAnchors([pki.root], sources=['test'])
    checked = _counting_signatures(monkeypatch)
    first = pki.issue('one.lab.adcs.test', wcce_pki.ec_key('one'))
    assert trust.verify(first, [pki.ca, pki.root], now=NOW) == [pki.ca, pki.root]
    assert checked == ['CN=one.lab.adcs.test', 'CN=LAB-CA', 'CN=LAB Root CA']
    del checked[:]
    second = pki.issue('two.lab.adcs.test', wcce_pki.ec_key('two'), serial=77)
    assert trust.verify(second, [pki.ca, pki.root], now=NOW) == [pki.ca, pki.root]
    assert checked == ['CN=two.lab.adcs.test']   # only the new leaf's signature
    # a leaf the issuing CA's key did not sign is refused as before (the full path check runs and fails)
    forged = wcce_pki.make_cert('forged.lab.adcs.test', wcce_pki.ec_key('forged'), issuer=pki.ca,
                                issuer_key=wcce_pki.ec_key('not-the-ca'))
    with pytest.raises(_errors.CertificateError, match='does not chain to a trusted CA certificate'):
        trust.verify(forged, [pki.ca, pki.root], now=NOW)
    # other CA certificates offered, or a time outside the path's validity: the whole path is checked again
    del checked[:]
    trust.verify(second, [pki.ca, pki.root, rogue_pki()[1]], now=NOW)
    assert 'CN=LAB Root CA' in checked
    with pytest.raises(_errors.CertificateError, match='is not valid at'):
        trust.verify(second, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=2000))


def test_a_leaf_that_is_no_longer_valid_is_refused_with_a_known_path(monkeypatch):
    import datetime
    pki = wcce_pki.pki()
    trust = _anchors.TrustAnchors([pki.root], sources=['test'])
    trust.verify(pki.issue('one.lab.adcs.test', wcce_pki.ec_key('one')), [pki.ca], now=NOW)
    short = pki.issue('short.lab.adcs.test', wcce_pki.ec_key('short'), days=1, serial=78)
    with pytest.raises(_errors.CertificateError, match='"CN=short.lab.adcs.test" is not valid at'):
        trust.verify(short, [pki.ca], now=NOW + datetime.timedelta(days=3))
