#!/usr/bin/env bash
# The man pages (packaging/man): each renders without a single warning,
# through man-db as a user reads it and through groff with every warning
# on, and each program's page mentions every long option its --help
# prints, so the pages cannot fall behind the programs.
#
# Usage: man_test.sh [BUILD_DIR]   (default: build, under the source tree)
set -uo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
if [[ $build != /* ]]; then
  if [[ -d $build ]]; then build=$(cd "$build" && pwd); else build=$src/$build; fi
fi
mandir=$src/packaging/man

# man with --warnings is man-db's; groff is groff-base's.
missing=()
if ! command -v man >/dev/null || ! man --version 2>/dev/null | grep -q '^man '; then missing+=(man-db); fi
command -v groff >/dev/null || missing+=(groff-base)
if ((${#missing[@]})); then
  if [[ -n ${CI-} ]]; then
    echo "FAIL: missing tools: install the Debian package(s) ${missing[*]}"
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "SKIP: missing tools (Debian package(s) ${missing[*]})"
  exit 0
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

pages=(bantamd.8 bantam.1 bantam-regex.1 bantam.conf.5)

for page in "${pages[@]}"; do
  file=$mandir/$page
  if [[ ! -r $file ]]; then
    fail "$page: missing"
    continue
  fi
  # The title line names the page as its file does.
  name=${page%.*} section=${page##*.}
  th=$(sed -n 's/^\.TH[[:space:]]\{1,\}\([^[:space:]]*\)[[:space:]]\{1,\}\([^[:space:]]*\).*/\1 \2/p' "$file" | head -1)
  th=${th//\\-/-}
  if [[ ${th,,} == "${name,,} $section" ]]; then
    pass "$page: .TH names $name($section)"
  else
    fail "$page: .TH says '$th', want '${name^^} $section'"
  fi
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$file" 2>&1 >/dev/null)
  if [[ -z $warnings ]]; then
    pass "$page: man --warnings is silent"
  else
    fail "$page: man --warnings says:"$'\n'"$warnings"
  fi
  warnings=$(groff -man -ww -z "$file" 2>&1)
  if [[ -z $warnings ]]; then
    pass "$page: groff -man -ww is silent"
  else
    fail "$page: groff -man -ww says:"$'\n'"$warnings"
  fi
done

# Every long option a program's --help prints appears in its page's
# rendered text (ASCII, no emphasis, so option names read as typed).
check_options() {
  local prog=$1 page=$2 help text opt n=0
  if [[ ! -x $build/$prog ]]; then
    fail "$prog: $build/$prog not built"
    return
  fi
  if ! help=$("$build/$prog" --help 2>&1); then
    fail "$prog --help failed"
    return
  fi
  text=$(groff -man -Tascii -P-c -P-b -P-o -P-u "$mandir/$page" 2>/dev/null)
  local -a opts
  mapfile -t opts < <(grep -oE -- '--[A-Za-z][A-Za-z0-9-]*' <<<"$help" | sort -u)
  if ((${#opts[@]} == 0)); then
    fail "$prog --help lists no long options"
    return
  fi
  local absent=()
  for opt in "${opts[@]}"; do
    n=$((n + 1))
    grep -qE -- "(^|[^-[:alnum:]])${opt}([^-[:alnum:]]|\$)" <<<"$text" || absent+=("$opt")
  done
  if ((${#absent[@]} == 0)); then
    pass "$page: documents all $n long options of $prog --help"
  else
    fail "$page: does not document ${absent[*]} (from $prog --help)"
  fi
}
check_options bantamd bantamd.8
check_options bantam bantam.1
check_options bantam-regex bantam-regex.1

echo "$passed passed, $failed failed"
((failed == 0))
