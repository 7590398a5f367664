# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified DCE/RPC replies: one job, the words and bounds of a reply that fails verification.

``_rpc_conn`` checks every reply PDU before its stub is used (call id, fragment order, auth type / level / context,
the NTLM signature or Kerberos token with the sequence number, the bounds below); a failure there or a verified
reply that does not decode becomes a ``_errors.ReplyVerificationError`` (a ``ProtocolError``) built here, with the
same remedy everywhere: nothing was written, check the network path. impacket's own ``DCERPC_v5.recv()`` checks
none of this (it unseals without comparing the NTLM signature, accepts plaintext replies in a packet-privacy session,
ignores Kerberos sequence numbers), which is why the collection no longer sends its calls through it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import ReplyVerificationError

MAX_FRAGMENTS = 16384
MAX_REPLY_BYTES = 64 * 1024 * 1024

LEVEL_NAMES = {1: 'none', 2: 'connect', 3: 'call', 4: 'packet', 5: 'packet integrity', 6: 'packet privacy'}

REMEDY = ('Something between this host and the CA altered, replayed or forged RPC traffic (or the CA\'s RPC '
          'security is broken): check the network path to the CA, then run the task again.')


def verification_error(peer, cause):
    return ReplyVerificationError(
        'The reply from the CA at %s failed integrity verification (%s); it was discarded and nothing was '
        'written' % (peer or 'the CA', cause), remedy=REMEDY)


def decode_error(peer, what, exc):
    # a ReplyVerificationError: a verified reply that does not decode was cut or extended through the fields its
    # verifier does not cover (or the CA is broken); like a failed verifier it is no reason to fall back
    return ReplyVerificationError(
        'The reply from the CA at %s could not be decoded (a malformed or truncated %s reply); nothing was written'
        % (peer or 'the CA', what), detail=exception_name(exc), remedy=REMEDY)


def exception_name(exc):
    """'struct.error', 'builtins.IndexError': which decoder failed, without the library's text."""
    return '%s.%s' % (type(exc).__module__, type(exc).__name__)
