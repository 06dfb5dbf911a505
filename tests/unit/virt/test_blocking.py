"""Running an engine with its progress logged (native threading mode; the
eventlet mode runs in the Nova functional suite)."""

from unittest import mock

import pytest

from sparc_nova import conf
from sparc_nova.virt import blocking


@pytest.fixture
def every_second():
    conf.CONF.set_override('progress_log_interval', 1, group='sparc')
    yield
    conf.CONF.clear_override('progress_log_interval', group='sparc')


def test_result_and_progress(every_second, caplog):
    def engine(a, b, *, progress):
        progress(1, 4)
        with mock.patch('time.monotonic', return_value=1e9):
            progress(3, 4)
        return a + b

    caplog.set_level('INFO')
    assert blocking.call(engine, 1, 2, label='Scrubbing x') == 3
    text = caplog.text
    assert 'Scrubbing x: started' in text
    assert 'Scrubbing x: 75%' in text
    assert 'Scrubbing x: 25%' not in text
    assert 'Scrubbing x: done in' in text


def test_errors_propagate():
    def engine(*, progress):
        raise ValueError('boom')

    with pytest.raises(ValueError, match='boom'):
        blocking.call(engine, label='x')
