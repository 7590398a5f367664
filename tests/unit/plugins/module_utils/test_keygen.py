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


def test_a_key_begun_early_goes_to_the_plan_that_asks_for_its_size():
    with _keygen.KeyMaker() as maker:
        maker.prestart(3072)
        maker.prestart(1000)   # not a usable size: nothing begun, the plan says why
        [early] = maker._early[3072]
        assert list(maker._early) == [3072]
        other = maker('rsa', 2048, None)
        assert other._future is not early and maker._early[3072] == [early]
        taken = maker('rsa', 3072, None)
        assert taken._future is early and maker._early[3072] == []
        assert taken.result().key_size == 3072 and other.result().key_size == 2048
    idle = _keygen.KeyMaker(background=False)
    idle.prestart(2048)
    assert idle._early == {} and idle._executor is None


def test_the_single_request_begins_its_key_before_it_is_planned(tmp_path):
    def begun(known_template=None, replacing=False, **kw):
        with _keygen.KeyMaker() as maker:
            _keygen.early_key(maker, spec(tmp_path, **kw), known_template, replacing=replacing)
            return dict((size, len(f)) for size, f in maker._early.items())
    assert begun() == {2048: 1}
    assert begun(key_size=3072) == {3072: 1}
    assert begun(key_type='ecdsa') == {}
    rule = {'minimum_size': 4096, 'key_type': None, 'algorithm': None}
    assert begun(lambda name: {'requirements': {'key': rule}}) == {4096: 1}   # the cached template's key rule
    assert begun(request_id=7) == {}
    assert begun(replacing=True) == {}                    # begun before the plan already
    (tmp_path / 'k.pem').write_bytes(b'a key')
    assert begun() == {}                                  # the key on disk is kept
    assert begun(regenerate_key=True) == {}               # before the no-op check: the plan may keep it
    assert begun(regenerate_key=True, replacing=True) == {2048: 1}   # the run enrolls: replaced
    assert begun(replacing=True) == {}
