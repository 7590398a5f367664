# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wire counters: one job, count what the DCE/RPC transport puts on the network (for ``make bench``).

``WIRE_STATS`` is process-wide; ``_rpc_conn`` counts connections, PDUs (by type), security handshakes, alter_context
PDUs, calls and bytes. ``wire_figures()`` returns them as a JSON-able dict; ``WIRE_STATS.reset()`` zeroes them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

FIELDS = ('connections', 'pdus_sent', 'pdus_received', 'handshakes', 'alter_contexts', 'calls', 'bytes_sent',
          'bytes_received', 'pings', 'reconnects')


class WireStats(object):
    """Counters of one process (not thread-safe: a module process runs one session at a time)."""

    def __init__(self):
        self.package = None
        self.reset()

    def reset(self):
        for name in FIELDS:
            setattr(self, name, 0)
        self.package = None

    def add(self, name, count=1):
        setattr(self, name, getattr(self, name) + count)

    def as_dict(self):
        out = dict((name, getattr(self, name)) for name in FIELDS)
        out['package'] = self.package
        return out


WIRE_STATS = WireStats()


def wire_figures():
    """The counters since the last reset, e.g. {'connections': 2, 'pdus_sent': 9, ..., 'package': 'negotiate'}."""
    return WIRE_STATS.as_dict()
