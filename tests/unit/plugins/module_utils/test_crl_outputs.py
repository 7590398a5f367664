# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl_outputs: what is written to dest/delta_dest: the file's own bytes when it holds this CRL number of this
issuer in this format, a new encoding otherwise, never an older CRL over a newer one unless forced."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('cryptography')

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_outputs  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402

CA = P.Ca('OUT-CA', key_name='out')
OTHER = P.Ca('OTHER-CA', key_name='other')


def test_encode_crl_pem_and_der():
    crl = CA.crl(number=3)
    assert _crl_outputs.encode_crl(crl, 'pem') == P.pem(crl)
    assert _crl_outputs.encode_crl(crl, 'der') == P.der(crl)


def test_content_for_a_missing_or_unreadable_file_is_the_new_crl(tmp_path):
    crl = CA.crl(number=3)
    assert _crl_outputs.content_for(str(tmp_path / 'none.crl'), crl, 'pem') == P.pem(crl)
    junk = tmp_path / 'junk.crl'
    junk.write_bytes(b'not a CRL')
    assert _crl_outputs.content_for(str(junk), crl, 'der') == P.der(crl)


def test_content_for_keeps_the_same_crl_number_in_the_same_format(tmp_path):
    on_disk = CA.crl(number=5)
    path = tmp_path / 'ca.crl'
    path.write_bytes(P.pem(on_disk))
    fetched = CA.crl(number=5)                  # the same number, other bytes (a new signature)
    assert _crl_outputs.content_for(str(path), fetched, 'pem', CA.cert) == P.pem(on_disk)
    # another format, a newer number or another issuer: rewritten
    assert _crl_outputs.content_for(str(path), fetched, 'der', CA.cert) == P.der(fetched)
    newer = CA.crl(number=6)
    assert _crl_outputs.content_for(str(path), newer, 'pem', CA.cert) == P.pem(newer)
    other = OTHER.crl(number=5)
    assert _crl_outputs.content_for(str(path), other, 'pem', OTHER.cert) == P.pem(other)


def test_content_for_refuses_an_older_crl_unless_forced(tmp_path):
    path = tmp_path / 'ca.crl'
    path.write_bytes(P.der(CA.crl(number=9)))
    older = CA.crl(number=8)
    with pytest.raises(v.CrlError) as err:
        _crl_outputs.content_for(str(path), older, 'der', CA.cert)
    assert str(err.value) == ('%s: the fetched CRL (CRL number 8) is older than the one already there (CRL number 9, '
                              'same issuer and key); the file is kept (force=true replaces it)' % path)
    assert _crl_outputs.content_for(str(path), older, 'der', CA.cert, force=True) == P.der(older)


class _Job(object):
    def __init__(self, base, issuer_cert):
        self.base = base
        self.issuer_cert = issuer_cert


def _pipe_params(current=None, force=False):
    return {'current_crl': current, 'force': force}


def test_pipe_outputs_return_the_crl_as_pem_and_compare_with_current_crl():
    fetched = CA.crl(number=4)
    out = _crl_outputs.pipe_outputs(_pipe_params(), _Job(fetched, CA.cert))
    assert out == {'changed': True, 'crl': P.pem(fetched).decode('ascii')}
    current = P.pem(CA.crl(number=4)).decode('ascii')       # same number held by the caller: unchanged, kept
    out = _crl_outputs.pipe_outputs(_pipe_params(current), _Job(CA.crl(number=4), CA.cert))
    assert out == {'changed': False, 'crl': current}
    newer = CA.crl(number=5)
    out = _crl_outputs.pipe_outputs(_pipe_params(current), _Job(newer, CA.cert))
    assert out == {'changed': True, 'crl': P.pem(newer).decode('ascii')}


def test_pipe_outputs_refuse_an_older_crl_than_current_crl_unless_forced():
    current = P.pem(CA.crl(number=9)).decode('ascii')
    older = CA.crl(number=8)
    with pytest.raises(v.CrlError) as err:
        _crl_outputs.pipe_outputs(_pipe_params(current), _Job(older, CA.cert))
    assert str(err.value) == ('current_crl: the fetched CRL (CRL number 8) is older than the one already there (CRL '
                              'number 9, same issuer and key); the current CRL is kept (force=true replaces it)')
    out = _crl_outputs.pipe_outputs(_pipe_params(current, force=True), _Job(older, CA.cert))
    assert out['changed'] is True and out['crl'] == P.pem(older).decode('ascii')
