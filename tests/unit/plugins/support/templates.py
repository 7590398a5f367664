# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only encoders for certificate template attributes (the collection only decodes them)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

_FILETIME_UNITS_PER_SECOND = 10 ** 7
_SECONDS_PER_DAY = 86400


def encode_period(days=0, hours=0, seconds=0):
    """Encode a period as Windows stores it (negative 100 ns count, 8 bytes little-endian)."""
    total = (days * _SECONDS_PER_DAY + hours * 3600 + seconds) * _FILETIME_UNITS_PER_SECOND
    return struct.pack('<q', -total)
