"""Message translation (oslo.i18n, domain ``sparc_nova``): ``_`` for a
message, ``_P`` for one whose words follow a count (``_P('%d path', '%d
paths', n) % n``: "1 path", "2 paths", and the right plural forms in
languages with more than two).
"""

import oslo_i18n

__all__ = ['_', '_P']

DOMAIN = 'sparc_nova'

_translators = oslo_i18n.TranslatorFactory(domain=DOMAIN)

#: The translation of a message.
_ = _translators.primary

#: The translation of a message with a count: (singular, plural, count).
_P = _translators.plural_form
