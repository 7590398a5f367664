# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_directory: CA selection from the options or the enrollment services in Active Directory."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.adcs.enrollment.plugins.module_utils import _directory, _errors
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    FakeDirectory,
    SERVICES,
)


def test_select_cas_by_template_and_name():
    d = FakeDirectory(SERVICES)
    assert [t.name for t in _directory.select_cas('WebServer', directory=d)] == ['CA-ONE', 'CA-TWO']
    assert [t.name for t in _directory.select_cas('webserver', ca_name='ca-two', directory=d)] == ['CA-TWO']
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA publishes the certificate template EFS'):
        _directory.select_cas('EFS', directory=d)
    with pytest.raises(_errors.InvalidInput, match='No enterprise CA named NOPE found'):
        _directory.select_cas('WebServer', ca_name='NOPE', directory=d)
    with pytest.raises(_errors.InvalidInput, match='Give ca_host and ca_name, or domain'):
        _directory.select_cas('WebServer', ca_host='x')
    [only] = _directory.select_cas('WebServer', ca_host='127.0.0.12', ca_name='LAB-CA')
    assert (only.name, only.address, only.source) == ('LAB-CA', '127.0.0.12', 'options')
