"""Long fuzzing runs of the parsers with atheris (libFuzzer).

    python tools/fuzz/run.py TARGET [libFuzzer options...] [CORPUS_DIR...]

Targets: see ``TARGETS`` in checkpoint_targets.py, introspect_targets.py,
walker_targets.py, plan_targets.py, follow_targets.py and journal_targets.py
(``walkers`` reads the checkpoint named by ``SPARC_FUZZ_CHECKPOINT``).
Example, one million
executions of the stream parser seeded with the regression corpus:

    python tools/fuzz/run.py stream -runs=1000000 -timeout=10 \\
        /tmp/corpus tests/fuzz_corpus/checkpoint
"""

import logging
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from tools.fuzz import checkpoint_targets  # noqa: E402
from tools.fuzz import follow_targets  # noqa: E402
from tools.fuzz import introspect_targets  # noqa: E402
from tools.fuzz import journal_targets  # noqa: E402
from tools.fuzz import plan_targets  # noqa: E402
from tools.fuzz import walker_targets  # noqa: E402

# sparc-nova may be installed editable (a custom import finder), which
# atheris cannot hook: instrument every loaded module's bytecode instead.
atheris.instrument_all()


TARGETS = dict(checkpoint_targets.TARGETS, **introspect_targets.TARGETS,
               **walker_targets.TARGETS)
TARGETS.update(plan_targets.TARGETS)
TARGETS.update(follow_targets.TARGETS)
TARGETS.update(journal_targets.TARGETS)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit('usage: run.py {%s} [libFuzzer args]' % '|'.join(TARGETS))
    target = TARGETS[sys.argv[1]]
    # The sandbox parent logs the confinement record of every result it
    # reads: not for each of a million fuzzer inputs. Set here, not where
    # the targets are defined: the regression tests import those.
    logging.getLogger('sparc_nova.engine.sandbox').setLevel(logging.ERROR)
    atheris.Setup([sys.argv[0]] + sys.argv[2:], target)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
