#!/bin/bash
# DevStack plugin of sparc-nova: nova-compute runs SparcLibvirtDriver.
# All the work is done by the functions of lib/sparc, which sparc-nova's
# test cloud runs too.

# shellcheck source=devstack/lib/sparc
source "$SPARC_NOVA_DIR/devstack/lib/sparc"

if is_service_enabled sparc-nova; then
    if [[ $1 == stack && $2 == install ]]; then
        echo_summary "Installing sparc-nova"
        install_sparc_nova
    elif [[ $1 == stack && $2 == post-config ]]; then
        echo_summary "Configuring sparc-nova"
        configure_sparc_nova
        configure_sparc_nova_api
        # Sealed suspends (sparc:suspend=seal) need the key manager.
        if is_service_enabled barbican; then
            configure_sparc_key_manager
        fi
        if is_service_enabled g-api; then
            configure_sparc_glance
        fi
    elif [[ $1 == stack && $2 == extra ]]; then
        echo_summary "Checking that Nova loads SparcLibvirtDriver"
        init_sparc_nova
        if is_service_enabled g-api; then
            init_sparc_glance
        fi
    elif [[ $1 == stack && $2 == test-config ]]; then
        # No tempest plugin: sparc-nova's end-to-end checks are its own
        # test cloud's scenarios (tests/e2e).
        :
    fi
    if [[ $1 == unstack ]]; then
        # Nothing of its own runs: nova-compute is stopped by DevStack.
        :
    fi
    if [[ $1 == clean ]]; then
        cleanup_sparc_nova
    fi
fi
