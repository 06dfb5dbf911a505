"""What nova-api answers an invalid policy with, taken from the installed
``sparc policy check`` (shared by the Nova harness and the e2e tests).
"""

import os
import subprocess
import sys


def policy_check_error(pairs: dict) -> str:
    """The message nova-api answers instance metadata ``pairs`` with:
    ``invalid privacy policy:`` and the problems ``sparc policy check``
    prints (one ``problem:`` line each, exit 1), in its words.
    """
    sparc = os.path.join(os.path.dirname(sys.executable), 'sparc')
    result = subprocess.run(
        [sparc, 'policy', 'check'] + ['%s=%s' % i for i in pairs.items()],
        capture_output=True, text=True)
    assert result.returncode == 1, result
    problems = [line.split('problem: ', 1)[1]
                for line in result.stdout.splitlines()
                if line.startswith('  problem: ')]
    assert problems, result
    return 'invalid privacy policy: ' + '; '.join(problems)
