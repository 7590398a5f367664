"""Stand-in for get-pip.py that ansible-test downloads to bootstrap pip in its virtual environments.

This network has no route to that download; pip itself comes from the interpreter's ensurepip, then the requested
pip version is installed from the package index like any other package. Installed by tests/tools/sanity.sh under
~/.ansible/test/cache/get_pip_<version>.py.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
