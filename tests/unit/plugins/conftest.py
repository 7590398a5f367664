# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures of the plugin unit tests. Test-only helpers and encoders are in the package ``support``, imported
as ``ansible_collections.adcs.enrollment.tests.unit.plugins.support.<topic>``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest


@pytest.fixture(scope='module')
def pki():
    """The throw-away PKI of support.wcce_pki (root -> issuing CA -> leaf), built once per session."""
    pytest.importorskip('cryptography')
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
    return wcce_pki.pki()


@pytest.fixture
def world_dir():
    """A fresh 0755 directory outside pytest's private tmp_path (other users can reach it), removed afterwards."""
    import os
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix='adcs-files-')
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture(autouse=True)
def private_policy_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own enrollment policy cache directory (wcce_request's default is ADCS_POLICY_CACHE_DIR):
    nothing a test learns reaches another test or the machine's /var/cache/adcs-enrollment."""
    monkeypatch.setenv('ADCS_POLICY_CACHE_DIR', str(tmp_path_factory.mktemp('policy-cache')))


@pytest.fixture(autouse=True)
def no_bytecode_finder():
    """wcce_request.main() puts the compiled-code cache's finder first in sys.meta_path (_bytecode.install): it leaves
    with the test that ran the module, so that no later test imports through another test's cache directory."""
    yield
    from ansible_collections.adcs.enrollment.plugins.module_utils import _bytecode
    _bytecode.uninstall()
