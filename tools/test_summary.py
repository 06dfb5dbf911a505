"""The one-screen summary at the end of tools/run-tests.sh.

tools/run-tests.sh appends one line per stage to a stages file (tab
separated: name, exit status or ``-`` when the stage did not run, wall
seconds, the junit XML file the stage wrote or ``-``, and a note). This
prints, per stage, the tests run, passed, failed and skipped and the wall
time, then the slowest ten tests of all junit files, and last a line
``N passed, N failed, N skipped`` for the whole run.

A stage without a junit file (flake8, shellcheck, an install) counts as
one test, passed when it exited 0. A stage that exited non-zero without a
failed test in its junit file (pytest's exit 5: no test ran; a crash)
counts one failure more. Exit status: 1 when anything failed, else 0.

    python tools/test_summary.py artifacts/stages.tsv
"""

import dataclasses
import os
import sys
from xml.etree import ElementTree

__all__ = ['Case', 'Stage', 'read_junit', 'read_stages', 'render', 'main']

#: How many of the slowest tests are listed.
SLOWEST = 10
#: Test names longer than this are cut at the front.
NAME_WIDTH = 80


@dataclasses.dataclass
class Case:
    """One test case of a junit XML file."""

    name: str       #: ``classname::name``
    outcome: str    #: passed, failed, error or skipped
    seconds: float  #: setup, call and teardown


@dataclasses.dataclass
class Stage:
    """One stage of the test command and what it ran."""

    name: str
    rc: int | None          #: None: the stage did not run
    seconds: float
    junit: str | None
    note: str = ''
    cases: list[Case] = dataclasses.field(default_factory=list)
    junit_missing: bool = False

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cases)

    @property
    def passed(self) -> int:
        if self.junit is None:
            return int(self.rc == 0)
        return self.count('passed')

    @property
    def failed(self) -> int:
        if self.rc is None:
            return 0
        if self.junit is None:
            return int(self.rc != 0)
        failed = self.count('failed') + self.count('error')
        # A non-zero exit no failed test explains (no test ran, a crash),
        # or a missing junit file, is a failure of its own.
        return failed + int((self.rc != 0 and failed == 0) or
                            self.junit_missing)

    @property
    def skipped(self) -> int:
        return self.count('skipped')

    @property
    def run(self) -> int:
        if self.junit is None:
            return int(self.rc is not None)
        return len(self.cases)


def read_junit(path: str) -> list[Case]:
    """The test cases of a junit XML file (pytest's ``--junitxml``)."""
    cases = []
    for case in ElementTree.parse(path).getroot().iter('testcase'):
        outcome = 'passed'
        for kind, name in (('failure', 'failed'), ('error', 'error'),
                           ('skipped', 'skipped')):
            if case.find(kind) is not None:
                outcome = name
                break
        cases.append(Case('%s::%s' % (case.get('classname'),
                                      case.get('name')),
                          outcome, float(case.get('time') or 0)))
    return cases


def read_stages(path: str) -> list[Stage]:
    """The stages of a stages file, with the cases of their junit files
    (relative paths are relative to the stages file's directory's parent,
    the repository root).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    stages = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            fields = line.rstrip('\n').split('\t') + ['']
            name, rc, seconds, junit, note = fields[:5]
            stage = Stage(name, None if rc == '-' else int(rc),
                          float(seconds or 0),
                          None if junit in ('', '-') else junit, note)
            if stage.junit and stage.rc is not None:
                junit_path = os.path.join(root, stage.junit)
                try:
                    stage.cases = read_junit(junit_path)
                except (OSError, ElementTree.ParseError) as e:
                    stage.junit_missing = True
                    stage.note = (stage.note + ' ' if stage.note else '') + \
                        'no junit results (%s)' % e
            stages.append(stage)
    return stages


def _wall(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return '%dm%02ds' % (minutes, secs) if minutes else '%ds' % secs


def render(stages: list[Stage]) -> list[str]:
    """The summary's lines; the last one is the run's totals."""
    lines = ['== Summary',
             '%-18s %6s %6s %6s %7s %8s  %s' % (
                 'stage', 'run', 'passed', 'failed', 'skipped', 'wall',
                 'exit')]
    for s in stages:
        if s.rc is None:
            lines.append('%-18s %6s %6s %6s %7s %8s  not run%s' % (
                s.name, '-', '-', '-', '-', '-',
                ': ' + s.note if s.note else ''))
            continue
        lines.append('%-18s %6d %6d %6d %7d %8s  %d%s' % (
            s.name, s.run, s.passed, s.failed, s.skipped,
            _wall(s.seconds), s.rc, '  ' + s.note if s.note else ''))
    cases = sorted(((c.seconds, s.name, c.name) for s in stages
                    for c in s.cases), reverse=True)[:SLOWEST]
    if cases:
        lines.append('slowest %d tests:' % len(cases))
        for seconds, stage, name in cases:
            if len(name) > NAME_WIDTH:
                name = '...' + name[-(NAME_WIDTH - 3):]
            lines.append('  %6s  %-16s %s' % (_wall(seconds), stage, name))
    passed = sum(s.passed for s in stages)
    failed = sum(s.failed for s in stages)
    skipped = sum(s.skipped for s in stages)
    lines.append('%d passed, %d failed, %d skipped'
                 % (passed, failed, skipped))
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print('usage: test_summary.py STAGES_FILE', file=sys.stderr)
        return 2
    try:
        stages = read_stages(argv[0])
    except (OSError, ValueError) as e:
        print('test_summary.py: %s: %s' % (argv[0], e), file=sys.stderr)
        print('0 passed, 1 failed')
        return 1
    print('\n'.join(render(stages)))
    return 1 if sum(s.failed for s in stages) else 0


if __name__ == '__main__':
    sys.exit(main())
