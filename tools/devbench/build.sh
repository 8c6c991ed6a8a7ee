#!/bin/bash
# Builds tools/devbench/bundle.tar.xz: Debian 12 PostgreSQL 15 + PgBouncer + pgfunnel
# (the repository's ./pgfunnel, built first with `make`) + their non-glibc libs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
make -C "$REPO" -s all
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || {
    apt-get install -y -q pgbouncer >/dev/null && { systemctl disable --now pgbouncer >/dev/null 2>&1 || true; }
}
STAGE=$(mktemp -d /tmp/devbench-stage.XXXXXX)
R=$STAGE/pgroot
mkdir -p $R/usr/lib/postgresql/15/bin $R/usr/lib/postgresql/15/lib $R/usr/share/postgresql $R/usr/sbin $R/libs
for b in postgres initdb pg_ctl pgbench psql pg_isready; do cp -a /usr/lib/postgresql/15/bin/$b $R/usr/lib/postgresql/15/bin/; done
ln -s postgres $R/usr/lib/postgresql/15/bin/postmaster
( cd /usr/lib/postgresql/15/lib && for f in *; do case $f in llvmjit*|bitcode) continue;; esac; cp -a "$f" $R/usr/lib/postgresql/15/lib/; done )
cp -a /usr/share/postgresql/15 $R/usr/share/postgresql/
cp -a /usr/sbin/pgbouncer $R/usr/sbin/
cp -a "$REPO/pgfunnel" $R/usr/sbin/
# glibc's own libraries (package libc6) stay out: the target's glibc provides them
GLIBC_RE='/(ld-linux[^/]*|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|libBrokenLocale|libnss_[a-z]+|libthread_db|libc_malloc_debug)\.so'
for f in $R/usr/lib/postgresql/15/bin/* $R/usr/lib/postgresql/15/lib/*.so $R/usr/sbin/pgbouncer $R/usr/sbin/pgfunnel; do
  [ -L "$f" ] && continue
  ldd "$f" | awk '/=>/ && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ $path =~ $GLIBC_RE ]]; then continue; fi
  cp -L "$path" "$R/libs/$name"
done
ls $R/libs
# self-containment check: under LD_LIBRARY_PATH=libs every non-glibc lib must resolve inside the bundle
bad=0
for f in $R/usr/lib/postgresql/15/bin/* $R/usr/lib/postgresql/15/lib/*.so $R/usr/sbin/pgbouncer $R/usr/sbin/pgfunnel $R/libs/*; do
  [ -L "$f" ] && continue
  while read -r name path; do
    [[ $path =~ $GLIBC_RE ]] && continue
    case $path in $R/libs/*) ;; *) echo "NOT IN BUNDLE: $f -> $name => $path"; bad=1;; esac
  done < <(LD_LIBRARY_PATH=$R/libs ldd "$f" | awk '/=>/ {print $1, $3}')
done
[ $bad = 0 ] && echo "ldd check: all non-glibc libraries resolve inside the bundle"
du -sh $R
tar -C $STAGE -cf - pgroot | xz -T2 -9 > "$HERE/bundle.tar.xz.tmp"
mv "$HERE/bundle.tar.xz.tmp" "$HERE/bundle.tar.xz"
ls -la "$HERE/bundle.tar.xz"
rm -rf "$STAGE"
exit $bad
