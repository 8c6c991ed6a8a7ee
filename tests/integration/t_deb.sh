# shellcheck shell=bash
# t_deb.sh — `make deb` builds a Debian package (debian/) that lintian finds
# no error in; extracted with dpkg-deb -x, its binary runs and validates the
# packaged configuration.  Installing it needs root and a running systemd,
# which the tests do not assume (t_notify.sh plays the supervisor instead).

# timeout: 240
test_make_deb_builds_a_lintian_clean_package() {
    local out deb x version ctl unit
    command -v dpkg-buildpackage >/dev/null 2>&1 || skip "dpkg-dev is not installed"
    command -v dh >/dev/null 2>&1 || skip "debhelper is not installed"
    version=$(sed -n 's/^#define PGFUNNEL_VERSION *"\(.*\)"/\1/p' "$REPO_ROOT/proxy/version.h")
    out=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$REPO_ROOT" deb \
        DEB_OUT="$TEST_TMP/deb" 2>&1) ||
        fail "make deb: $(tail -n 30 <<<"$out")"
    deb=$TEST_TMP/deb/pgfunnel_${version}_$(dpkg --print-architecture).deb
    test -f "$deb" || fail "no $deb; make deb said: $(tail -n 10 <<<"$out")"
    assert_eq "$version" "$(dpkg-deb -f "$deb" Version)" "package version = pgfunnel version"

    if command -v lintian >/dev/null 2>&1; then
        out=$(lintian --fail-on error "$deb" 2>&1) || fail "lintian reports errors: $out"
    else
        echo "lintian is not installed: not checked"
    fi

    # the service's files, the configuration as conffiles
    ctl=$TEST_TMP/control
    dpkg-deb -e "$deb" "$ctl"
    assert_contains "$(cat "$ctl/conffiles")" "/etc/pgfunnel/pgfunnel.ini"
    assert_contains "$(cat "$ctl/conffiles")" "/etc/pgfunnel/userlist.txt"
    assert_contains "$(cat "$ctl/conffiles")" "/etc/logrotate.d/pgfunnel"
    assert_contains "$(cat "$ctl/postinst")" "adduser --system --group"
    assert_contains "$(cat "$ctl/postinst")" "deb-systemd-invoke reload pgfunnel.service"

    x=$TEST_TMP/x
    dpkg-deb -x "$deb" "$x"
    test -f "$x/usr/share/man/man5/pgfunnel.ini.5.gz" || fail "no pgfunnel.ini(5) in the package"
    test -f "$x/usr/share/man/man1/pgfunnel.1.gz" || fail "no pgfunnel(1) in the package"
    unit=$(cat "$x/lib/systemd/system/pgfunnel.service")
    assert_contains "$unit" $'\nExecStart=/usr/sbin/pgfunnel /etc/pgfunnel/pgfunnel.ini\n'
    assert_contains "$unit" $'\nUser=pgfunnel\n'
    assert_contains "$("$x/usr/sbin/pgfunnel" --version)" "pgfunnel $version"
    out=$("$x/usr/sbin/pgfunnel" --check "$x/etc/pgfunnel/pgfunnel.ini" 2>&1) ||
        fail "--check of the packaged configuration: $out"
    assert_contains "$out" "is valid"
    assert_not_contains "$out" "WARNING"
}
