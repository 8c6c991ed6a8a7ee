# shellcheck shell=bash
# t_install.sh — `make install` / `make uninstall` into a DESTDIR, the
# installed service configuration, the systemd unit and logrotate snippet,
# and the manual pages rendering without warnings.  The binary under test is
# installed as it is (make -o: nothing is rebuilt).

_version() {
    sed -n 's/^#define PGFUNNEL_VERSION *"\(.*\)"/\1/p' "$REPO_ROOT/proxy/version.h"
}

# _make TARGET [VAR=VALUE…] — make in the repository with the binary under test
# (and nothing of an outer make, such as make sanitize's BUILD and CFLAGS)
_make() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        make -s -C "$REPO_ROOT" BIN="$PGFUNNEL_BIN" -o "$PGFUNNEL_BIN" "$@"
}

# timeout: 60
test_make_install_and_uninstall() {
    local root=$TEST_TMP/root out f ini unit left
    out=$(_make install DESTDIR="$root" PREFIX=/usr 2>&1) || fail "make install: $out"
    for f in usr/bin/pgfunnel usr/share/man/man1/pgfunnel.1 usr/share/man/man5/pgfunnel.ini.5 \
        usr/share/pgfunnel/sql/auth_query.sql usr/share/doc/pgfunnel/README.md \
        usr/share/doc/pgfunnel/examples/pgfunnel.ini usr/lib/systemd/system/pgfunnel.service \
        etc/logrotate.d/pgfunnel etc/pgfunnel/pgfunnel.ini etc/pgfunnel/userlist.txt; do
        test -f "$root/$f" || fail "make install did not install /$f"
    done
    test -x "$root/usr/bin/pgfunnel" || fail "the binary is not executable"
    assert_eq 640 "$(stat -c %a "$root/etc/pgfunnel/pgfunnel.ini")" "mode of the configuration"
    assert_eq 640 "$(stat -c %a "$root/etc/pgfunnel/userlist.txt")" "mode of the userlist"

    # the installed binary runs, and its configuration is valid and set for the service
    assert_contains "$("$root/usr/bin/pgfunnel" --version)" "pgfunnel $(_version)"
    out=$("$root/usr/bin/pgfunnel" --check "$root/etc/pgfunnel/pgfunnel.ini" 2>&1) ||
        fail "--check of the installed configuration: $out"
    assert_not_contains "$out" "WARNING"
    ini=$(cat "$root/etc/pgfunnel/pgfunnel.ini")
    assert_contains "$ini" $'\nunix_socket_dir = /run/pgfunnel\n'
    assert_contains "$ini" $'\nlogfile = /var/log/pgfunnel/pgfunnel.log\n'
    assert_contains "$ini" $'\npidfile = /run/pgfunnel/pgfunnel.pid\n'
    assert_contains "$ini" $'\nauth_type = md5\n'
    assert_contains "$ini" $'\nauth_file = /etc/pgfunnel/userlist.txt\n'

    unit=$(cat "$root/usr/lib/systemd/system/pgfunnel.service")
    assert_contains "$unit" $'\nType=notify\n'
    assert_contains "$unit" $'\nExecStart=/usr/bin/pgfunnel /etc/pgfunnel/pgfunnel.ini\n'
    assert_contains "$unit" "/usr/bin/pgfunnel --daemon --takeover /etc/pgfunnel/pgfunnel.ini"
    assert_contains "$unit" $'\nWatchdogSec='
    assert_not_contains "$unit" "@" "unsubstituted @VARIABLE@ in the unit"
    assert_contains "$(cat "$root/etc/logrotate.d/pgfunnel")" "/var/log/pgfunnel/pgfunnel.log {"

    # a second install keeps the (possibly edited) configuration
    echo '"app" "secret"' >>"$root/etc/pgfunnel/userlist.txt"
    out=$(_make install DESTDIR="$root" PREFIX=/usr 2>&1) || fail "make install again: $out"
    assert_contains "$(cat "$root/etc/pgfunnel/userlist.txt")" '"app" "secret"' "edited userlist"

    # uninstall removes every file except the edited userlist
    out=$(_make uninstall DESTDIR="$root" PREFIX=/usr 2>&1) || fail "make uninstall: $out"
    assert_contains "$out" "keeping the edited"
    left=$(cd "$root" && find . -type f | sort)
    assert_eq "./etc/pgfunnel/userlist.txt" "$left" "files left after make uninstall"
}

# PREFIX=/usr/local: the GNU layout below it, configuration in /usr/local/etc.
test_make_install_prefix_local() {
    local root=$TEST_TMP/root out
    out=$(_make install DESTDIR="$root" 2>&1) || fail "make install: $out"
    test -x "$root/usr/local/bin/pgfunnel" || fail "no /usr/local/bin/pgfunnel"
    test -f "$root/usr/local/share/man/man5/pgfunnel.ini.5" || fail "no man page under /usr/local"
    assert_contains "$(cat "$root/usr/local/lib/systemd/system/pgfunnel.service")" \
        "ExecStart=/usr/local/bin/pgfunnel /usr/local/etc/pgfunnel/pgfunnel.ini"
    out=$(_make uninstall DESTDIR="$root" 2>&1) || fail "make uninstall: $out"
    assert_eq "" "$(cd "$root" && find . -type f)" "files left after make uninstall"
}

# Both pages render without a single groff warning (man --warnings).
test_man_pages_render_without_warnings() {
    local page out
    command -v man >/dev/null 2>&1 || skip "man (man-db) is not installed"
    for page in "$REPO_ROOT/man/pgfunnel.1" "$REPO_ROOT/man/pgfunnel.ini.5"; do
        out=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man -l $page failed: $out"
        assert_eq "" "$out" "warnings rendering $(basename "$page")"
        assert_contains "$(MANWIDTH=80 man -l "$page" 2>/dev/null)" "NAME" "rendered $page"
    done
    # the generated page documents the options as the binary knows them
    assert_contains "$(MANWIDTH=200 man -l "$REPO_ROOT/man/pgfunnel.ini.5" 2>/dev/null)" \
        "Port to listen on (TCP and unix socket name)."
}
