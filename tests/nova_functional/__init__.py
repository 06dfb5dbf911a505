"""SparcLibvirtDriver in Nova's own functional harness.

These tests run in a process of their own, once per concurrency mode
(eventlet, native threading): Nova's eventlet monkey patching must happen
before anything else is imported and cannot be undone. ``conftest.py``
only collects them when ``SPARC_NOVA_FUNCTIONAL`` is set;
``tests/functional/test_nova_harness.py`` runs both modes.
"""
