"""Stand-in for ansible-test's pip bootstrap script (get-pip.py), whose download host these
machines cannot reach: pip comes from the interpreter's own ensurepip, then installs the
requested packages from the package index like get-pip.py would."""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], stdout=subprocess.DEVNULL)
# get-pip.py's own options, which pip install does not know.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
