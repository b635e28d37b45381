"""A stand-in for pip's get-pip.py, for ansible-test on a machine that cannot
reach the host it downloads that script from (ci-files.testing.ansible.com).

ansible-test creates an empty virtualenv and runs this file with the pip
options and packages it wants (``pip==<version>`` among them), the way it runs
get-pip.py. This does the same with what every CPython carries: ensurepip
installs the bundled pip, which then installs the asked-for packages from the
configured index. scripts/sanity copies it to
~/.ansible/test/cache/get_pip_<version>.py, where ansible-test looks first.
"""

import subprocess
import sys

args = sys.argv[1:]
# get-pip.py's own options: it installs setuptools and wheel unless told not to.
extra = ([] if "--no-setuptools" in args else ["setuptools"]) + ([] if "--no-wheel" in args else ["wheel"])
args = [a for a in args if a not in ("--no-setuptools", "--no-wheel")]
# In a process of its own: ensurepip drops the PIP_* variables and points
# PIP_CONFIG_FILE at /dev/null in its environment, which would leave the pip
# run below without the machine's pip configuration (its index, its CA).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *args, *extra]))
