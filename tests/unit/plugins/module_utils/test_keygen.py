# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ansible_collections.adcs.enrollment.plugins.module_utils import _keygen, _plan
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import spec


def test_rsa_keys_are_made_in_the_background():
    with _keygen.KeyMaker() as maker:
        pending = [maker('rsa', 2048, None) for _i in range(3)]
        assert maker._executor is not None
        keys = [p.result() for p in pending]
    assert all(isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048 for k in keys)
    assert len(set(k.private_numbers().p for k in keys)) == 3
    assert maker._executor is None


def test_parameters_are_checked_at_once():
    with _keygen.KeyMaker() as maker:
        with pytest.raises(InvalidInput, match='RSA key size 1000 is not supported'):
            maker('rsa', 1000, None)
        with pytest.raises(InvalidInput, match='Unsupported key type'):
            maker('dsa', 2048, None)
        key = maker('ecdsa', None, 'secp256r1').result()   # ECDSA: made at once
        assert isinstance(key, ec.EllipticCurvePrivateKey) and maker._executor is None


def test_without_background_every_key_is_made_at_once():
    maker = _keygen.KeyMaker(background=False)
    assert isinstance(maker('rsa', 2048, None).result(), rsa.RSAPrivateKey) and maker._executor is None


def test_a_plan_waits_for_its_key_only_when_it_is_used(tmp_path):
    with _keygen.KeyMaker() as maker:
        plan = _plan.plan_request(spec(tmp_path), keygen=maker)
        assert plan.key_is_new and isinstance(plan._key, _keygen.PendingKey)
        assert isinstance(plan.key, rsa.RSAPrivateKey) and plan.key is plan._key
