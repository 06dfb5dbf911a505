"""Adding the sparc_policy filter to nova-api's api-paste.ini."""

import os
import sys

from paste import deploy
import pytest

from sparc_nova.api import paste_ini

NOVA_PASTE = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')


def nova_paste() -> str:
    with open(NOVA_PASTE) as f:
        return f.read()


def pipelines(text: str) -> dict[str, list[str]]:
    found, section = {}, None
    for line in text.splitlines():
        if line.startswith('['):
            section = line.strip('[]')
        elif line.startswith('keystone ='):
            found[section] = line.split('=', 1)[1].split()
    return found


def test_filter_goes_right_before_the_application():
    updated = paste_ini.add_filter(nova_paste())
    found = pipelines(updated)
    assert set(found) == {'composite:' + c for c in paste_ini.COMPOSITES}
    for names in found.values():
        assert names[-2:] == ['sparc_policy', 'osapi_compute_app_v21']
        assert names.index('keystonecontext') < names.index('sparc_policy')
    assert paste_ini.FILTER_SECTION in updated


def test_everything_else_is_kept_and_rerun_changes_nothing():
    original = nova_paste()
    updated = paste_ini.add_filter(original)
    assert paste_ini.add_filter(updated) == updated
    removed = [line for line in original.splitlines()
               if line not in updated.splitlines()]
    assert [line.split('=')[0] for line in removed] == ['keystone ', ] * 2


def test_pipeline_without_context_is_refused():
    text = ('[composite:openstack_compute_api_v21]\nkeystone = faultwrap '
            'osapi_compute_app_v21\n'
            '[composite:openstack_compute_api_v21_legacy_v2_compatible]\n'
            'keystone = keystonecontext osapi_compute_app_v21\n')
    with pytest.raises(ValueError, match='no keystonecontext'):
        paste_ini.add_filter(text)


def test_missing_composite_is_refused():
    with pytest.raises(ValueError, match='no pipeline'):
        paste_ini.add_filter('[composite:openstack_compute_api_v21]\n'
                             'keystone = keystonecontext app\n')


def test_main_edits_in_place_and_paste_loads_the_filter(tmp_path):
    path = tmp_path / 'api-paste.ini'
    path.write_text(nova_paste())
    path.chmod(0o640)
    assert paste_ini.main([str(path)]) == 0
    assert path.stat().st_mode & 0o777 == 0o640
    factory = deploy.loadfilter('config:%s' % path, 'sparc_policy')
    assert factory(lambda environ, start: []).__class__.__name__ == \
        'SparcPolicyMiddleware'


def test_main_reports_a_bad_file(tmp_path, capsys):
    path = tmp_path / 'api-paste.ini'
    path.write_text('[app:x]\n')
    assert paste_ini.main([str(path)]) == 1
    assert 'no pipeline' in capsys.readouterr().err
