#!/usr/bin/env python3
"""No #include points upward in the module order.

bantam's modules stack in the order the data flows (README, "Layout"):

  base <- config, metrics <- filter <- source <- jail <- action
       <- store, control <- daemon <- tool <- cmd

A module may include its own headers and those of the modules below it,
never those above it; modules on the same level (store and control, tool
and cmd) do not include each other. A public header include/bantam/X.h
belongs to the module whose src/<module>/ holds X.cc; the header-only ones
are listed in HEADER_ONLY. Every src/<module>/*.{cc,h} and every
include/bantam/*.h is checked. Fails naming file:line of each include that
points upward; ends with "N passed, M failed".

Run: python3 tests/layering_test.py --source-dir REPO
"""
import argparse
import os
import re
import sys

# Lower levels first; modules on one level are siblings.
LEVELS = [
    ['base'],
    # metrics: the Prometheus exposition writer, histograms and the HTTP
    # endpoint, over base only. Low, so that the modules that own a counter
    # can use its types; what bantam measures is collected by the daemon.
    ['config', 'metrics'],
    ['filter'],
    ['source'],
    ['jail'],
    ['action'],
    ['store', 'control'],
    ['fleet'],
    ['daemon'],
    ['tool'],
    ['cmd'],
]
LEVEL = {m: i for i, mods in enumerate(LEVELS) for m in mods}

# Public headers with no .cc of their own, and the module they belong to.
HEADER_ONLY = {
    'action.h': 'action',        # the Action interface
    'ordered_map.h': 'base',     # an insertion-ordered map
    'ticket.h': 'jail',          # what a jail knows about one failure id
}

# Includes that point upward and are allowed for now, each a debt with its
# reason: {('src/x/y.cc', 'z.h'): 'why'}. The test fails when one is no
# longer needed, so the list cannot go stale. None today.
EXCEPTIONS = {
}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"bantam/([^"]+)"')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--source-dir', required=True)
    ap.add_argument('--bantam')  # passed to every script test; unused here
    args = ap.parse_args()
    root = os.path.abspath(args.source_dir)
    src = os.path.join(root, 'src')
    inc = os.path.join(root, 'include', 'bantam')

    problems = []
    owner = dict(HEADER_ONLY)
    for mod in sorted(os.listdir(src)):
        d = os.path.join(src, mod)
        if not os.path.isdir(d):
            continue
        if mod not in LEVEL:
            problems.append(f'src/{mod}/: module missing from LEVELS in tests/layering_test.py')
            continue
        for f in os.listdir(d):
            if f.endswith('.cc'):
                header = f[:-3] + '.h'
                if header in owner and owner[header] != mod:
                    problems.append(f'include/bantam/{header}: both src/{owner[header]}/ and '
                                    f'src/{mod}/ have its .cc')
                owner[header] = mod

    files = []  # (path relative to root, module)
    for mod in sorted(os.listdir(src)):
        d = os.path.join(src, mod)
        if mod in LEVEL and os.path.isdir(d):
            files += [(f'src/{mod}/{f}', mod) for f in sorted(os.listdir(d))
                      if f.endswith(('.cc', '.h'))]
    for f in sorted(os.listdir(inc)):
        if not f.endswith('.h'):
            continue
        if f not in owner:
            problems.append(f'include/bantam/{f}: no src/<module>/{f[:-2]}.cc and not in '
                            'HEADER_ONLY (tests/layering_test.py)')
            continue
        files.append((f'include/bantam/{f}', owner[f]))

    checked = ok = 0
    used_exceptions = set()
    for rel, mod in files:
        with open(os.path.join(root, rel), encoding='utf-8') as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                header = m.group(1)
                checked += 1
                target = owner.get(header)
                if target is None:
                    problems.append(f'{rel}:{lineno}: includes unknown header bantam/{header}')
                    continue
                if target == mod or LEVEL[target] < LEVEL[mod]:
                    ok += 1
                    continue
                if (rel, header) in EXCEPTIONS:
                    used_exceptions.add((rel, header))
                    ok += 1
                    continue
                way = 'sideways' if LEVEL[target] == LEVEL[mod] else 'upward'
                problems.append(f'{rel}:{lineno}: {mod} includes bantam/{header} of {target} '
                                f'({way})')
    for key in sorted(set(EXCEPTIONS) - used_exceptions):
        problems.append(f'exception {key[0]} -> bantam/{key[1]} no longer needed: remove it '
                        'from EXCEPTIONS in tests/layering_test.py')

    for p in problems:
        print(p)
    print(f'{checked} includes checked in {len(files)} files')
    print(f'{ok} passed, {len(problems)} failed')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
