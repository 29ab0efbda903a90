#!/usr/bin/env bash
# Quick start, step 2: the whole test suite. Unit and conformance tests
# (ctest), the same again under AddressSanitizer + UndefinedBehaviorSanitizer
# (all but the fail2ban output comparisons), then every libFuzzer target for
# a short run. Needs packaging/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${BANTAM_FUZZ_SECONDS:-20}
phase() { echo "== $1 (at ${SECONDS}s)"; }

phase "build and test"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTAM_BUILD_TESTS=ON -DBANTAM_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

phase "build and test under ASan/UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBANTAM_BUILD_TESTS=ON \
  -DBANTAM_SANITIZE="address;undefined" -DBANTAM_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
# The fail2ban output comparisons (label "oracle") and the booted-container
# package test (label "system") ran in the plain pass, and
# so did the control socket's full load (20k ids); here it runs with 5k.
# intercept_tls_get_addr=0: the leak checker of Debian 12's sanitizer runtime
# misreads the thread-local blocks of a dlopen'd library (libsystemd, for a
# journal jail) and dies at exit with "Tracer caught signal 11"
# (google/sanitizers#1322); static TLS and everything else is still scanned.
ASAN_OPTIONS=detect_leaks=1:intercept_tls_get_addr=0 BANTAM_CONTROL_LOAD_IDS=5000 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE "oracle|system"

phase "fuzz (${fuzz_seconds}s per target)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBANTAM_BUILD_TESTS=OFF -DBANTAM_BUILD_FUZZERS=ON -DBANTAM_WERROR=ON >/dev/null
# Only the fuzzers: the programs and tests were built and run above.
fuzz_targets=()
for src in fuzz/*_fuzzer.cc; do fuzz_targets+=("$(basename "$src" .cc)"); done
cmake --build build-fuzz -j"$jobs" --target "${fuzz_targets[@]}"
for fuzzer in build-fuzz/fuzz/*_fuzzer; do
  name=$(basename "$fuzzer" _fuzzer)
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "-- $name"
  "$fuzzer" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 "$work" 2>&1 | tail -n 12
  rm -rf "$work"
done
phase "all tests passed"
