"""Sphinx configuration of sparc-nova's documentation.

The guides are the Markdown files in ``doc/`` (read on a forge as they
are); each page here includes one of them through MyST. The configuration
reference and the sample file are generated from the oslo.config options,
the command line reference from the ``sparc`` argument parser, and the
release notes from ``releasenotes/notes`` (reno).
"""

project = 'sparc-nova'
copyright = 'sparc-nova contributors'

extensions = [
    'myst_parser',
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
    'sphinxarg.ext',
    'reno.sphinxext',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
master_doc = 'index'
exclude_patterns = ['_build']
myst_heading_anchors = 3

config_generator_config_file = [
    ('../../etc/sparc-nova/sparc-nova-config-generator.conf',
     '_static/sparc-nova'),
]

html_theme = 'alabaster'
html_static_path = ['_static']
