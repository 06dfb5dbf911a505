"""Process selectors of the shared vocabulary: matching."""

from sparc_nova.vocabulary import selectors


def test_exe_glob_uses_the_path_glob_syntax():
    sel = selectors.parse('exe:/usr/bin/*')
    assert sel.matches(selectors.Process(exe='/usr/bin/gpg'))
    assert not sel.matches(selectors.Process(exe='/usr/lib/x/gpg'))
    assert selectors.parse('exe:/**/gpg*').matches(
        selectors.Process(exe='/usr/lib/x/gpg-agent'))
    assert selectors.parse('exe:/opt/app').matches(
        selectors.Process(exe='/opt/app/bin/server'))


def test_unknown_attributes_never_match():
    process = selectors.Process(comm='vault')
    assert selectors.parse('vault').matches(process)
    for text in ('exe:/usr/**', 'pid:42', 'uid:0', 'cgroup:/'):
        assert not selectors.parse(text).matches(process)


def test_cgroup_matches_itself_and_below():
    sel = selectors.parse('cgroup:/user.slice/app-1')
    assert sel.matches(selectors.Process(cgroup='/user.slice/app-1'))
    assert sel.matches(selectors.Process(cgroup='/user.slice/app-1/sub'))
    assert not sel.matches(selectors.Process(cgroup='/user.slice/app-10'))
