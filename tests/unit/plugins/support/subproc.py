# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Python code run in a fresh interpreter with this one's import path: for tests of what a path imports (a module
imported by an earlier test stays in sys.modules here)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys


def run_python(code):
    """stdout+stderr of ``python -c code`` as text (the caller asserts on it; a failure shows it all)."""
    out = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), check=False)
    return out.stdout.decode()
