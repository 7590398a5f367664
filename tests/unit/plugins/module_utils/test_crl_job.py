# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl_job: which URLs (CDP, freshest CRL, options), the issuer (given, from the CA, from AIA: anchored only),
base + delta orchestration and fallback, the facts the module returns."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7, Encoding  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_fetch  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_http  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_job  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_web import (  # noqa: E402
    FakeCaClient,
    http_client as client,
)

CA = P.Ca()
OTHER = P.Ca('OTHER-CA', key_name='other')
SEC_CA = P.Ca('SEC-CA', key_name='sec')
NOW = P.NOW
DAY = datetime.timedelta(days=1)


class MapRetriever(_crl_fetch.Retriever):
    """Retriever over a dict of URL -> bytes (or exception)."""

    def __init__(self, data):
        _crl_fetch.Retriever.__init__(self, client())
        self.data = data
        self.asked = []

    def get(self, url, trusted=False):
        self.asked.append(url)
        value = self.data.get(url)
        if value is None:
            raise _crl_http.FetchError('unreachable')
        return value


BASE_URLS = ['ldap:///CN=T?certificateRevocationList', 'http://pki/t.crl']


DELTA_URLS = ['http://pki/t+.crl']


def _leaf(serial=0x77):
    return CA.leaf(serial=serial, cdp=BASE_URLS, aia=['http://pki/ca.crt'])


def test_job_from_certificate_with_aia_and_delta():
    base = CA.crl(number=5, freshest=DELTA_URLS, revoked=[(0x10, None, None)])
    revoked_at = NOW - datetime.timedelta(hours=3)
    delta = CA.crl(number=6, delta_of=5, revoked=[(0x77, x509.ReasonFlags.superseded, revoked_at)])
    retriever = MapRetriever({'http://pki/t.crl': P.der(base), 'http://pki/t+.crl': P.der(delta),
                              'http://pki/ca.crt': CA.der})
    job = _crl_job.CrlJob(retriever, cert=_leaf(), now=NOW, anchors=[CA.cert]).run()
    assert job.issuer_source == 'http://pki/ca.crt'
    assert v.crl_number(job.base) == 5 and job.base_served_by == 'http://pki/t.crl'
    assert v.crl_number(job.delta) == 6 and job.delta_served_by == 'http://pki/t+.crl'
    assert [(t['kind'], t['url'], t['ok']) for t in job.tried] == [
        ('issuer', 'http://pki/ca.crt', True), ('base', BASE_URLS[0], False), ('base', BASE_URLS[1], True),
        ('delta', DELTA_URLS[0], True)]
    status = job.status()
    assert status['revoked'] and status['reason'] == 'superseded' and status['source'] == 'delta'


def test_job_tampered_first_url_falls_back():
    good = P.der(CA.crl(number=5))
    tampered = bytearray(good)
    tampered[-5] ^= 0xFF
    retriever = MapRetriever({'http://a/t.crl': bytes(tampered), 'http://b/t.crl': good})
    job = _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://a/t.crl', 'http://b/t.crl'], now=NOW).run()
    assert job.base_served_by == 'http://b/t.crl'
    assert 'signature' in job.tried[0]['error']


def test_job_all_urls_fail():
    stale = CA.crl(number=5, next_update=NOW - datetime.timedelta(days=1), this_update=NOW - datetime.timedelta(days=8))
    retriever = MapRetriever({'http://a/t.crl': P.der(stale)})
    with pytest.raises(_crl_job.JobError, match='no usable CRL: http://a/t.crl: the CRL is stale') as exc:
        _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://a/t.crl'], now=NOW).run()
    assert len(exc.value.tried) == 1
    job = _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://a/t.crl'], now=NOW, freshness='warn').run()
    assert len(job.warnings) == 1 and 'stale' in job.warnings[0]


def test_job_missing_delta_fails_or_warns():
    base = P.der(CA.crl(number=5, freshest=DELTA_URLS))
    retriever = MapRetriever({'http://pki/t.crl': base})
    with pytest.raises(_crl_job.JobError, match='points to a delta CRL but none could be used'):
        _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW).run()
    job = _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW, freshness='warn').run()
    assert job.delta is None and 'delta' in job.warnings[0]
    job = _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW, delta=False).run()
    assert job.delta is None and job.warnings == []


def test_job_delta_for_a_newer_base_is_rejected():
    base = P.der(CA.crl(number=5, freshest=DELTA_URLS))
    delta = P.der(CA.crl(number=9, delta_of=8))
    retriever = MapRetriever({'http://pki/t.crl': base, DELTA_URLS[0]: delta})
    with pytest.raises(_crl_job.JobError, match='needs base CRL number 8 or later'):
        _crl_job.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW).run()


def test_job_needs_an_issuer():
    with pytest.raises(_crl_job.JobError, match='set issuer_certificate'):
        _crl_job.CrlJob(MapRetriever({}), urls=['http://a/t.crl'], now=NOW).run()
    with pytest.raises(_crl_job.JobError, match='could not be obtained from its AIA'):
        _crl_job.CrlJob(MapRetriever({'http://pki/ca.crt': P.Ca('OTHER', key_name='other').der}), cert=_leaf(),
                        now=NOW).run()


def test_job_without_cdp():
    with pytest.raises(_crl_job.JobError, match='no CRL distribution point'):
        _crl_job.CrlJob(MapRetriever({}), cert=CA.leaf(), issuer_cert=CA.cert, now=NOW).run()


def test_job_from_ca():
    base, delta = CA.crl(number=5), CA.crl(number=6, delta_of=5)
    client = FakeCaClient({0x0B: 1, 0x11: P.der(base), 0x12: P.der(delta), 0x0C: CA.der})
    ca = _crl_fetch.CaFetcher(client, 'dcom://ca/T')
    job = _crl_job.CrlJob(MapRetriever({}), ca=ca, now=NOW).run()
    assert job.issuer_source == 'dcom://ca/T'
    assert job.base_served_by == 'dcom://ca/T (base CRL)' and job.delta_served_by == 'dcom://ca/T (delta CRL)'
    # a CA without delta CRLs
    client = FakeCaClient({0x0B: 1, 0x11: P.der(base), 0x12: RuntimeError('CERTSRV_E_PROPERTY_EMPTY'), 0x0C: CA.der})
    ca = _crl_fetch.CaFetcher(client, 'dcom://ca/T')
    job = _crl_job.CrlJob(MapRetriever({}), ca=ca, now=NOW).run()
    assert job.delta is None and job.tried[-1]['kind'] == 'delta' and not job.tried[-1]['ok']


def test_job_from_a_renewed_ca_checks_the_crl_of_the_key_that_issued_the_certificate():
    """After a new-key renewal: a certificate issued by key 0 is checked against key 0's CRL (CRL name ID 0) and the
    CA certificate of key 0; one issued by key 1 against key 1's (MS-WCCE 3.2.1.4.3.2.18)."""
    renewed = P.renewed(CA, 1, 1, key_name='renewed')
    old_leaf, new_leaf = CA.leaf(serial=0x55), renewed.leaf(serial=0x66)
    props = {0x0B: 2, 0x0C: {0: CA.der, 1: renewed.der}, 0x27: {0: 0, 1: 0x00010001},
             0x11: {0: P.der(CA.crl(number=5, revoked=[(0x55, None, None)])), 1: P.der(renewed.crl(number=6))},
             0x12: {0: RuntimeError('CERTSRV_E_PROPERTY_EMPTY'), 1: RuntimeError('CERTSRV_E_PROPERTY_EMPTY')}}
    job = _crl_job.CrlJob(MapRetriever({}), ca=_crl_fetch.CaFetcher(FakeCaClient(dict(props)), 'dcom://ca/T'),
                          cert=old_leaf, now=NOW).run()
    assert job.issuer_cert == CA.cert and job.base.extensions.get_extension_for_class(x509.CRLNumber).value \
        .crl_number == 5
    assert job.status()['revoked'] is True
    job = _crl_job.CrlJob(MapRetriever({}), ca=_crl_fetch.CaFetcher(FakeCaClient(dict(props)), 'dcom://ca/T'),
                          cert=new_leaf, now=NOW).run()
    assert job.issuer_cert == renewed.cert and job.status()['revoked'] is False
    # the current key's CRL is checked with the current CA certificate when no certificate is given
    job = _crl_job.CrlJob(MapRetriever({}), ca=_crl_fetch.CaFetcher(FakeCaClient(dict(props)), 'dcom://ca/T'),
                          now=NOW).run()
    assert job.issuer_cert == renewed.cert and job.base_served_by == 'dcom://ca/T (base CRL)'


def test_ca_fetcher_reports_a_refused_session_first():
    class Refused(Exception):
        def to_message(self):
            return 'Activating CCertRequestD on the CA was refused; HRESULT 0x00000005 (E_ACCESSDENIED)'

    class Session(object):
        opened = 0

        def open(self):
            Session.opened += 1
            raise Refused()

    ca = _crl_fetch.CaFetcher(FakeCaClient({}), 'dcom://ca/T', session=Session())
    with pytest.raises(_crl_http.FetchError, match='refused; HRESULT 0x00000005'):
        ca.ca_certificate()
    job = _crl_job.CrlJob(MapRetriever({}), ca=_crl_fetch.CaFetcher(FakeCaClient({}), 'dcom://ca/T', session=Session()),
                          now=NOW)
    with pytest.raises(_crl_job.JobError, match='cannot get the CA certificate from dcom://ca/T: Activating'):
        job.run()


# ------------------------------------------------------------------------------------------------------------
# local files named by a certificate or CRL
# ------------------------------------------------------------------------------------------------------------


LOCAL_REFUSED = ('a local file named by a certificate or CRL is never read (file URLs and paths are taken only from '
                 'the urls and delta_urls options)')


class Wire(_crl_fetch.Retriever):
    """A Retriever whose HTTP is a dict; local files and LDAP go through the real code."""

    def __init__(self, web):
        _crl_fetch.Retriever.__init__(self, client())
        self.web = web

    def get(self, url, trusted=False):
        if url.startswith('http'):
            if url not in self.web:
                raise _crl_http.FetchError('HTTP 404')
            return self.web[url]
        return _crl_fetch.Retriever.get(self, url, trusted)


def test_job_refuses_local_cdp_of_a_certificate_but_reads_option_paths(tmp_path):
    crl = P.der(SEC_CA.crl(number=7))
    local = tmp_path / 'sec.crl'
    local.write_bytes(crl)
    leaf = SEC_CA.leaf(cdp=['file://%s' % local, str(local), 'http://pki/sec.crl'])
    job = _crl_job.CrlJob(Wire({'http://pki/sec.crl': crl}), cert=leaf, issuer_cert=SEC_CA.cert, now=P.NOW).run()
    assert job.base_served_by == 'http://pki/sec.crl'
    assert [t['error'] for t in job.tried[:2]] == [LOCAL_REFUSED, LOCAL_REFUSED]
    # without the HTTP URL nothing is left
    leaf = SEC_CA.leaf(cdp=['file:///dev/zero'])
    with pytest.raises(_crl_job.JobError, match='no usable CRL: file:///dev/zero: a local file named by a certificate'):
        _crl_job.CrlJob(Wire({}), cert=leaf, issuer_cert=SEC_CA.cert, now=P.NOW).run()
    # the same path in urls: read
    job = _crl_job.CrlJob(Wire({}), cert=leaf, issuer_cert=SEC_CA.cert, urls=[str(local)], now=P.NOW).run()
    assert job.base_served_by == str(local) and v.crl_number(job.base) == 7
    # a delta pointer of the CRL to a local file is refused too; delta_urls may name one
    delta = P.der(SEC_CA.crl(number=8, delta_of=7))
    delta_file = tmp_path / 'sec+.crl'
    delta_file.write_bytes(delta)
    base = P.der(SEC_CA.crl(number=7, freshest=['file://%s' % delta_file]))
    web = {'http://pki/sec.crl': base}
    leaf = SEC_CA.leaf(cdp=['http://pki/sec.crl'])
    with pytest.raises(_crl_job.JobError, match='points to a delta CRL but none could be used .*never read'):
        _crl_job.CrlJob(Wire(web), cert=leaf, issuer_cert=SEC_CA.cert, now=P.NOW).run()
    job = _crl_job.CrlJob(Wire(web), cert=leaf, issuer_cert=SEC_CA.cert, delta_urls=[str(delta_file)], now=P.NOW).run()
    assert v.crl_number(job.delta) == 8


def test_aia_file_url_of_a_certificate_is_refused():
    leaf = SEC_CA.leaf(cdp=['http://pki/sec.crl'], aia=['file:///dev/zero'])
    with pytest.raises(_crl_job.JobError, match='could not be obtained from its AIA'):
        _crl_job.CrlJob(Wire({'http://pki/sec.crl': P.der(SEC_CA.crl())}), cert=leaf, now=P.NOW).run()


# ------------------------------------------------------------------------------------------------------------
# an issuer from AIA comes from the party being verified: it must chain to a trust anchor
# ------------------------------------------------------------------------------------------------------------


def _planted(web_ca, cdp='http://evil/fake.crl', aia='http://evil/ca.crt'):
    return web_ca.leaf(cdp=[cdp], aia=[aia])


def test_planted_certificate_with_its_own_aia_and_crl_is_not_good():
    """An attacker's CA named like the real one signs a leaf whose AIA and CDP point to the attacker's server."""
    fake = P.Ca('SEC-CA', key_name='attacker')          # same name as the real SEC_CA, another key
    planted = _planted(fake)
    wire = Wire({'http://evil/ca.crt': fake.der, 'http://evil/fake.crl': P.der(fake.crl(number=99))})
    job = _crl_job.CrlJob(wire, cert=planted, anchors=[SEC_CA.cert], now=P.NOW)
    with pytest.raises(_crl_job.JobError) as err:
        job.run()
    assert str(err.value) == (
        'the issuing CA certificate of "CN=SEC-CA,DC=test" could not be obtained from its AIA (http://evil/ca.crt: '
        'the CA certificate "CN=SEC-CA,DC=test" is not trusted: it neither is nor was issued by a CA certificate of '
        'ca_bundle (or, without ca_bundle, of the system trust store)): set issuer_certificate, or ca_bundle to the '
        'CA certificates it must chain to')
    assert [t['url'] for t in job.tried] == ['http://evil/ca.crt']      # no CRL was even fetched
    # without anchors an AIA issuer is never used
    with pytest.raises(_crl_job.JobError, match='is not trusted'):
        _crl_job.CrlJob(wire, cert=planted, now=P.NOW).run()
    # the real CA as issuer_certificate: the planted CRL is refused (another key)
    with pytest.raises(_crl_job.JobError,
                       match='no usable CRL: http://evil/fake.crl: the CRL authority key identifier'):
        _crl_job.CrlJob(wire, cert=planted, issuer_cert=SEC_CA.cert, now=P.NOW).run()


def test_aia_issuer_that_is_an_anchor_or_issued_by_one_is_used():
    leaf = SEC_CA.leaf(cdp=['http://pki/sec.crl'], aia=['http://pki/ca.crt'])
    wire = Wire({'http://pki/ca.crt': SEC_CA.der, 'http://pki/sec.crl': P.der(SEC_CA.crl(number=3))})
    anchors = [P.Ca('X-CA', key_name='x').cert, SEC_CA.cert]
    job = _crl_job.CrlJob(wire, cert=leaf, anchors=lambda: anchors, now=P.NOW).run()
    assert job.issuer_source == 'http://pki/ca.crt' and v.crl_number(job.base) == 3
    # an issuing CA certified by the anchored root
    sub = P.intermediate(SEC_CA)
    leaf = sub.leaf(cdp=['http://pki/sub.crl'], aia=['http://pki/sub.crt'])
    wire = Wire({'http://pki/sub.crt': sub.der, 'http://pki/sub.crl': P.der(sub.crl(number=4))})
    job = _crl_job.CrlJob(wire, cert=leaf, anchors=[SEC_CA.cert], now=P.NOW).run()
    assert job.issuer_source == 'http://pki/sub.crt' and v.crl_number(job.base) == 4


def test_trust_anchors_from_ca_bundle_or_the_system_store(tmp_path):
    import ssl
    bundle = tmp_path / 'bundle.pem'
    other = P.Ca('OTHER-CA', key_name='other')
    bundle.write_bytes(SEC_CA.pem + other.pem)
    assert [c.subject for c in _crl_job.trust_anchors(str(bundle))] == [SEC_CA.cert.subject, other.cert.subject]
    # the bundle is read by _anchors.load_bundle, as for enrollment
    with pytest.raises(InvalidInput, match=r'^Cannot read ca_bundle .*none.pem: No such file or directory'):
        _crl_job.trust_anchors(str(tmp_path / 'none.pem'))
    junk = tmp_path / 'junk.pem'
    junk.write_bytes(b'junk')
    with pytest.raises(InvalidInput, match=r'^ca_bundle .*junk.pem holds no readable certificate'):
        _crl_job.trust_anchors(str(junk))
    system = _crl_job.trust_anchors()
    assert len(system) == len(ssl.create_default_context().get_ca_certs(binary_form=True))


# ------------------------------------------------------------------------------------------------------------
# pointers and facts
# ------------------------------------------------------------------------------------------------------------


def test_urls_of_certificate_and_crl():
    leaf = CA.leaf(cdp=['ldap:///CN=X?certificateRevocationList', 'http://h/x.crl', 'http://h/x.crl'],
                   freshest=['http://h/x+.crl'], aia=['http://h/ca.crt'])
    assert _crl_job.cdp_urls(leaf) == ['ldap:///CN=X?certificateRevocationList', 'http://h/x.crl']
    assert _crl_job.freshest_urls(leaf) == ['http://h/x+.crl']
    assert _crl_job.ca_issuers_urls(leaf) == ['http://h/ca.crt']
    bare = CA.leaf()
    assert _crl_job.cdp_urls(bare) == [] and _crl_job.freshest_urls(bare) == [] and _crl_job.ca_issuers_urls(bare) == []
    assert _crl_job.freshest_urls(CA.crl(freshest=['http://h/y+.crl'])) == ['http://h/y+.crl']


def test_crl_facts():
    crl = CA.crl(number=12, revoked=[(0xABC, x509.ReasonFlags.key_compromise, P.NOW - DAY), (0xDEF, None, None)],
                 freshest=['http://x/ca+.crl'])
    facts = _crl_job.crl_facts(crl, include_entries=True)
    assert facts['issuer'] == 'CN=TEST-CA,DC=test'
    assert facts['crl_number'] == 12 and facts['revoked_count'] == 2 and facts['is_delta'] is False
    assert facts['next_update'] == '2026-12-05T12:00:00Z' and facts['this_update'] == '2026-11-28T11:00:00Z'
    assert facts['freshest_crl_urls'] == ['http://x/ca+.crl']
    entries = dict((e['serial_number'], e) for e in facts['entries'])
    assert entries['ABC']['reason'] == 'keyCompromise' and entries['ABC']['reason_code'] == 1
    assert entries['ABC']['revocation_date'] == '2026-11-27T12:00:00Z'
    assert entries['DEF']['reason'] is None
    assert 'entries' not in _crl_job.crl_facts(crl)


def test_load_certificates_pem_der_pkcs7():
    assert _crl_job.load_certificate(CA.pem).subject == CA.name
    assert _crl_job.load_certificate(CA.der).subject == CA.name
    bundle = pkcs7.serialize_certificates([OTHER.cert, CA.cert], Encoding.DER)
    assert sorted(c.subject.rfc4514_string() for c in _crl_job.load_certificates(bundle)) == [
        'CN=OTHER-CA,DC=test', 'CN=TEST-CA,DC=test']
    assert len(_crl_job.load_certificates(CA.pem + OTHER.pem)) == 2
    with pytest.raises(v.CrlError):
        _crl_job.load_certificate(b'nonsense')
