"""sparc-nova in Nova's API: policies are checked when they are set.

``extra_specs``
    validators of the ``sparc:*`` flavor extra specs, registered through
    Nova's ``nova.api.extra_spec_validators`` entry point (400 at
    ``flavor set`` from microversion 2.86);
``middleware``
    a filter of nova-api's paste pipeline that checks ``sparc:*`` server
    metadata and refuses the checkpoints the hypervisor cannot scrub;
``paste_ini``
    adds that filter to an ``api-paste.ini``;
``validation``
    the one place these modules call the policy parser.
"""
