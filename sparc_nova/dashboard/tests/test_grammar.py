"""The count/noun agreement check the browser tests apply to every page
they screenshot (:mod:`.grammar`).
"""

from django.test import SimpleTestCase

from sparc_nova.dashboard.tests import grammar


class CountDisagreementTests(SimpleTestCase):

    def test_agreeing_counts_pass(self):
        text = ('removed 1 path (10 bytes) on 1 volume; 2 rules matched '
                'nothing. 1 snapshot, 3 refused operations, 0 frames, '
                '2 kernel copies not scrubbed, 1 removed file')
        self.assertEqual([], grammar.count_disagreements(text))

    def test_a_singular_count_with_a_plural_noun_fails(self):
        self.assertEqual(
            ['1 paths', '1 rules'],
            grammar.count_disagreements(
                'removed 1 paths (3 bytes); 1 rules matched nothing'))

    def test_other_counts_with_a_singular_noun_fail(self):
        self.assertEqual(
            ['0 path', '2 frame', '3 kernel copy'],
            grammar.count_disagreements(
                '0 path; 2 frame rewritten; 3 kernel copy not scrubbed'))

    def test_sizes_versions_and_other_words_are_not_counts(self):
        text = ('2 GiB, version 1.5 paths, 10:1 rules, 1 day ago, '
                'id 4-2 frames, 12 bytes')
        self.assertEqual([], grammar.count_disagreements(text))
