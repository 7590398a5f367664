# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate chains (_chain): building and verifying the path to a trust anchor."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.wcce_pki import NOW, machine_leaf as _leaf


# ---------------------------------------------------------------- chains
def test_verify_chain_ok(pki):
    path = _chain.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW)
    assert path == [pki.leaf, pki.ca, pki.root]
    assert _chain.verify_chain(pki.leaf, [pki.root, pki.ca], trust_anchors=[pki.root], now=NOW)[-1] == pki.root
    # an intermediate can be the anchor
    assert _chain.verify_chain(pki.leaf, [], trust_anchors=[pki.ca], now=NOW) == [pki.leaf, pki.ca]


def test_verify_chain_bad_signature(pki):
    # same issuer name and AKI, but signed by a different key
    rogue_key = wcce_pki.ec_key('rogue')
    forged = wcce_pki.make_cert('host.lab.adcs.test', pki.leaf_key, issuer=pki.ca, issuer_key=rogue_key, ski=False)
    with pytest.raises(CertificateError, match='does not verify'):
        _chain.verify_chain(forged, [pki.ca, pki.root], now=NOW)


def test_verify_chain_missing_issuer(pki):
    with pytest.raises(CertificateError, match='not among the CA certificates'):
        _chain.verify_chain(pki.leaf, [pki.root], now=NOW)


def test_verify_chain_untrusted_root(pki):
    other_root = wcce_pki.make_cert('Other Root', wcce_pki.rsa_key('other'), ca=True, serial=5)
    with pytest.raises(CertificateError, match='not a trusted CA'):
        _chain.verify_chain(pki.leaf, [pki.ca, pki.root], trust_anchors=[other_root], now=NOW)


def test_verify_chain_aki_mismatch_is_skipped(pki):
    # a CA with the same name but another key: rejected by AKI/SKI, the right one is found
    impostor = wcce_pki.make_cert('LAB-CA', wcce_pki.ec_key('imp'), issuer=pki.root, issuer_key=pki.root_key,
                                  ca=True, serial=3)
    assert _chain.verify_chain(pki.leaf, [impostor, pki.ca, pki.root], now=NOW) == [pki.leaf, pki.ca, pki.root]


def test_verify_chain_expired(pki):
    with pytest.raises(CertificateError, match='not valid at'):
        _chain.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=400))
    assert _chain.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=400),
                               check_validity=False)


def test_order_chain(pki):
    assert _chain.order_chain(pki.leaf, [pki.root, pki.leaf, pki.ca]) == [pki.ca, pki.root]
    assert _chain.order_chain(pki.leaf, [pki.root]) == []


# ---------------------------------------------------------------- a renewed CA: several certificates of one CA
def _renewal(pki, key, serial, not_before, days):
    return wcce_pki.make_cert('LAB-CA', key, issuer=pki.root, issuer_key=pki.root_key, ca=True, serial=serial,
                              days=days, not_before=not_before)


def test_same_key_renewal_chains_to_the_current_ca_certificate(pki):
    """Two CA certificates with one key: a certificate renewed after the CA renewal chains to the certificate that is
    valid now and expires last, also when the expired one comes first in the pool."""
    expired = _renewal(pki, pki.ca_key, 30, NOW - datetime.timedelta(days=400), 380)
    newer = _renewal(pki, pki.ca_key, 31, NOW - datetime.timedelta(days=1), 3000)
    for pool in ([expired, pki.ca, newer, pki.root], [newer, pki.ca, expired, pki.root]):
        assert _chain.verify_chain(pki.leaf, pool, now=NOW)[1] == newer
        assert _chain.order_chain(pki.leaf, pool, now=NOW) == [newer, pki.root]
    assert _chain.rank_issuers([expired, pki.ca, newer], NOW) == [newer, pki.ca, expired]


def test_new_key_renewal_chains_by_key(pki):
    """After a new-key renewal a certificate chains to the CA certificate of the key that signed it."""
    new_key = wcce_pki.ec_key('renewed-ca')
    renewed = _renewal(pki, new_key, 32, NOW - datetime.timedelta(days=1), 3000)
    leaf = wcce_pki.make_cert('new.lab.adcs.test', pki.leaf_key, issuer=renewed, issuer_key=new_key, serial=77)
    pool = [pki.ca, renewed, pki.root]
    assert _chain.verify_chain(leaf, pool, now=NOW)[1] == renewed
    assert _chain.verify_chain(pki.leaf, pool, now=NOW)[1] == pki.ca
    assert _chain.order_chain(leaf, pool, now=NOW) == [renewed, pki.root]
