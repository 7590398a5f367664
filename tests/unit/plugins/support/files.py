# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only helpers around _files/_staged: one file written as a staged switch, file modes, planted symlinks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

from ansible_collections.adcs.enrollment.plugins.module_utils._staged import FileSpec, StagedWrite


def write_file_atomic(path, content, mode=None, owner=None, group=None, backup=False, secret=False):
    """Write one file atomically; returns dict(changed=, backup_file=)."""
    spec = FileSpec(path, content, mode=mode, owner=owner, group=group, backup=backup, secret=secret)
    with StagedWrite([spec]) as sw:
        sw.commit()
    return {'changed': sw.changed, 'backup_file': sw.backups.get(spec.path)}


def mode(path):
    """Permission bits of the file at path."""
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def leftovers(directory):
    """Our temporary, journal and rollback files left in a directory."""
    return sorted(n for n in os.listdir(str(directory)) if n.startswith('.') or n.endswith('.rollback'))


def planted_symlink(tmp_path, name, target_mode=0o644):
    """A symlink ``out/<name>`` someone planted, pointing at a victim file elsewhere: (link, victim)."""
    victim_dir = tmp_path / 'victim'
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / (name + '.target')
    victim.write_bytes(b'VICTIM')
    os.chmod(str(victim), target_mode)
    out = tmp_path / 'out'
    out.mkdir(exist_ok=True)
    link = out / name
    os.symlink(str(victim), str(link))
    return link, victim
