# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_rpc_verify: the messages of a reply that fails verification or decoding (the checks themselves are tested with
the connection, test_rpc_conn.py / test_rpc_auth.py, and end to end in tests/integration/test_tamper.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_verify as v


def test_verification_error_message():
    exc = v.verification_error('127.0.0.100', 'NTLM signature mismatch, sequence 3')
    assert isinstance(exc, _errors.ReplyVerificationError) and isinstance(exc, _errors.ProtocolError)
    assert exc.to_message() == (
        'The reply from the CA at 127.0.0.100 failed integrity verification (NTLM signature mismatch, sequence 3); '
        'it was discarded and nothing was written. What to do: ' + v.REMEDY)
    assert v.verification_error(None, 'x').to_message().startswith('The reply from the CA at the CA failed')


def test_decode_error_names_the_decoder_not_its_text():
    err = v.decode_error('ca1', 'Request2', struct.error('unpack requires a buffer of 4 bytes'))
    assert isinstance(err, _errors.ReplyVerificationError)
    assert err.to_message().startswith('The reply from the CA at ca1 could not be decoded (a malformed or truncated '
                                       'Request2 reply); nothing was written')
    assert err.detail == 'struct.error'
    assert v.exception_name(IndexError('x')) == 'builtins.IndexError'


def test_bounds():
    assert v.MAX_FRAGMENTS == 16384 and v.MAX_REPLY_BYTES == 64 * 1024 * 1024
    assert v.LEVEL_NAMES[6] == 'packet privacy' and v.LEVEL_NAMES[5] == 'packet integrity'
