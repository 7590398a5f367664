# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_stats as s


def test_counters_reset_and_figures():
    stats = s.WireStats()
    stats.add('pdus_sent')
    stats.add('bytes_sent', 100)
    stats.package = 'ntlm'
    figures = stats.as_dict()
    assert figures['pdus_sent'] == 1 and figures['bytes_sent'] == 100 and figures['package'] == 'ntlm'
    assert set(figures) == set(s.FIELDS) | {'package'}
    json.dumps(figures)
    stats.reset()
    assert stats.as_dict() == dict(dict((name, 0) for name in s.FIELDS), package=None)


def test_wire_figures_reads_the_process_counters():
    s.WIRE_STATS.reset()
    s.WIRE_STATS.add('handshakes', 2)
    assert s.wire_figures()['handshakes'] == 2
    s.WIRE_STATS.reset()
