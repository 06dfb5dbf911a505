"""The test command's summary (tools/test_summary.py)."""

import os
import subprocess
import sys

from tools import test_summary

JUNIT = '''<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.unit.test_a" name="test_ok" time="1.5"/>
<testcase classname="tests.unit.test_a" name="test_bad" time="12.25">
  <failure message="assert 1 == 2">assert 1 == 2</failure></testcase>
<testcase classname="tests.unit.test_b" name="test_broken" time="0.5">
  <error message="fixture">boom</error></testcase>
<testcase classname="tests.unit.test_b" name="test_later" time="0.01">
  <skipped message="no cloud"/></testcase>
</testsuite></testsuites>
'''


def write_run(tmp_path, stages, junit=JUNIT):
    artifacts = tmp_path / 'artifacts'
    artifacts.mkdir()
    (artifacts / 'junit.xml').write_text(junit)
    path = artifacts / 'stages.tsv'
    path.write_text(''.join('\t'.join(fields) + '\n' for fields in stages))
    return str(path)


def test_read_junit(tmp_path):
    path = tmp_path / 'junit.xml'
    path.write_text(JUNIT)
    cases = test_summary.read_junit(str(path))
    assert [(c.name, c.outcome, c.seconds) for c in cases] == [
        ('tests.unit.test_a::test_ok', 'passed', 1.5),
        ('tests.unit.test_a::test_bad', 'failed', 12.25),
        ('tests.unit.test_b::test_broken', 'error', 0.5),
        ('tests.unit.test_b::test_later', 'skipped', 0.01)]


def test_stages_counted_and_totals_last(tmp_path):
    path = write_run(tmp_path, [
        ('flake8', '0', '20.4', '-'),
        ('shellcheck', '1', '1', '-'),
        ('pytest', '1', '125', 'artifacts/junit.xml'),
        ('Horizon browser', '-', '0', '-', '-m "not e2e" deselects it')])
    stages = test_summary.read_stages(path)
    assert [(s.run, s.passed, s.failed, s.skipped) for s in stages] == [
        (1, 1, 0, 0), (1, 0, 1, 0), (4, 1, 2, 1), (0, 0, 0, 0)]
    lines = test_summary.render(stages)
    assert lines[-1] == '2 passed, 3 failed, 1 skipped'
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    assert rows['pytest'] == ['pytest', '4', '1', '2', '1', '2m05s', '1']
    assert rows['flake8'] == ['flake8', '1', '1', '0', '0', '20s', '0']
    assert lines[5].endswith('not run: -m "not e2e" deselects it')
    slowest = lines[lines.index('slowest 4 tests:') + 1:-1]
    assert slowest[0].split() == ['12s', 'pytest',
                                  'tests.unit.test_a::test_bad']
    assert len(lines) <= 25


def test_slowest_ten_of_all_stages(tmp_path):
    cases = ''.join('<testcase classname="t" name="test_%d" time="%d"/>'
                    % (i, i) for i in range(15))
    path = write_run(tmp_path, [('pytest', '0', '100',
                                 'artifacts/junit.xml')],
                     junit='<testsuite>%s</testsuite>' % cases)
    lines = test_summary.render(test_summary.read_stages(path))
    start = lines.index('slowest 10 tests:')
    names = [line.split()[-1] for line in lines[start + 1:-1]]
    assert names == ['t::test_%d' % i for i in range(14, 4, -1)]
    assert lines[-1] == '15 passed, 0 failed, 0 skipped'


def test_exit_without_failed_test_is_a_failure(tmp_path):
    """pytest's exit 5 (no test ran) and a missing junit file fail."""
    path = write_run(tmp_path, [
        ('pytest', '5', '3', 'artifacts/junit.xml'),
        ('Horizon unit', '0', '3', 'artifacts/junit-horizon.xml')],
        junit='<testsuite tests="0"></testsuite>')
    stages = test_summary.read_stages(path)
    assert [s.failed for s in stages] == [1, 1]
    assert 'no junit results' in stages[1].note
    assert test_summary.main([path]) == 1


def test_command_prints_the_totals_last_and_exits_zero_when_green(
        tmp_path):
    path = write_run(tmp_path, [('flake8', '0', '2', '-')],
                     junit='<testsuite/>')
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))), 'tools',
        'test_summary.py')
    proc = subprocess.run([sys.executable, script, path],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == '1 passed, 0 failed, 0 skipped'
