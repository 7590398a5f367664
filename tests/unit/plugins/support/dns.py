# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS test material for the unit tests of _dns and _ldap: SRV records and resolvers that answer from memory."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class SRV(object):
    def __init__(self, priority, weight, port, target):
        self.priority, self.weight, self.port, self.target = priority, weight, port, target


class FakeResolver(object):
    """Answers every SRV query with ``records`` (or raises ``error``)."""

    def __init__(self, records=None, error=None):
        self.records = records or []
        self.error = error
        self.asked = []

    def resolve(self, name, rdtype):
        self.asked.append((name, rdtype))
        if self.error:
            raise self.error
        return self.records


class ResolverByName(object):
    """Answers the SRV queries named in ``answers`` ({qname: [SRV]}), NXDOMAIN (LookupError) otherwise."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def resolve(self, qname, rdtype):
        self.asked.append((qname, rdtype))
        if qname not in self.answers:
            raise LookupError('NXDOMAIN')
        return self.answers[qname]
