#!/bin/bash
# The few DevStack functions that devstack/lib/sparc uses, for the test
# cloud: same names, same arguments, acting on the cloud's virtualenv
# (SPARC_CLOUD_VENV) and its constraints (SPARC_CLOUD_CONSTRAINTS).

# iniset FILE SECTION OPTION VALUE - set one option (file created if absent).
function iniset {
    /usr/bin/python3 - "$@" <<'PY'
import configparser
import sys

path, section, option, value = sys.argv[1:5]
ini = configparser.RawConfigParser(strict=False)
ini.optionxform = str
ini.read(path)
if section != 'DEFAULT' and not ini.has_section(section):
    ini.add_section(section)
ini.set(section, option, value)
with open(path, 'w') as f:
    ini.write(f)
PY
}

# install_bindep FILE [PROFILE...] - install the Debian packages FILE lists.
function install_bindep {
    local file=$1
    shift
    local pkgs
    pkgs=$("$SPARC_CLOUD_VENV/bin/bindep" -b -f "$file" "$@" || true)
    if [[ -n $pkgs ]]; then
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends $pkgs
    fi
}

# setup_develop DIR - pip install -e DIR into the cloud's virtualenv.
function setup_develop {
    "$SPARC_CLOUD_VENV/bin/pip" install -q --disable-pip-version-check \
        -c "$SPARC_CLOUD_CONSTRAINTS" -e "$1"
}
