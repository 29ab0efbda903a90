#!/usr/bin/python3
"""Reference for `bantam-regex --json`: fail2ban-regex's own machinery, printing JSON.

Run with the interpreter that has fail2ban installed (/usr/bin/python3 on
Debian). It takes fail2ban-regex's options plus the two bantam-regex adds:

  --json        one JSON object per failure, in input order, nothing else on
                stdout: {"lineno": N, "id": ..., "time": ..., "fail": {...}}
  --now EPOCH   fixes "now" (MyTime.setTime) for year inference and for lines
                without a date

The options, the filter loading (name[opt=val] in -c DIR), the line skipping
(comments, empty lines) and the check-all-regex default are those of
fail2ban's Fail2banRegex class, which this script drives line by line; only
the output differs. Failures without an id (pending) and nofail matches print
nothing. Only plain log files are supported as LOG (no journal, no string).

Used as the oracle by samples_test.py --oracle-selftest and by
regex_vs_fail2ban_test.py. Not a test itself (no _test suffix).
"""

import json
import os
import sys

try:
    from fail2ban.client import fail2banregex as f2br
    from fail2ban.server.filter import FileContainer
    from fail2ban.server.mytime import MyTime
except ImportError as e:  # pragma: no cover
    sys.stderr.write("fail2ban_regex_json: fail2ban is not importable by %s: %s\n" %
                     (sys.executable, e))
    sys.exit(3)


def _to_json(value):
    if isinstance(value, (set, frozenset)):
        return sorted(_to_json(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return dict((str(k), _to_json(v)) for k, v in value.items())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # IPAddr and friends


def fail_dict(fail):
    """fail2ban's fail dict as bantam-regex prints it: matches as strings."""
    out = {}
    for k, v in fail.items():
        if v is None:
            continue
        if k == "matches":
            v = ["".join(m) if isinstance(m, (list, tuple)) else m for m in v]
        out[k] = _to_json(v)
    return out


def main(argv):
    parser = f2br.get_opt_parser()
    parser.add_option("--json", action="store_true", default=False,
                      help="print one JSON object per failure (required)")
    parser.add_option("--now", type=float, default=None,
                      help="fix the current time (epoch seconds)")
    opts, args = parser.parse_args(argv)
    if not opts.json:
        parser.error("only --json output is supported")
    if len(args) not in (2, 3):
        parser.error("provide LOG and REGEX [IGNOREREGEX]")
    if opts.out:
        parser.error("-o/--out is not supported with --json")
    log, regex = args[0], args[1]
    if not os.path.isfile(log):
        parser.error("LOG must be a file: %s" % log)

    # Everything fail2ban-regex says goes to stderr: stdout is JSON only.
    f2br.output = lambda s: sys.stderr.write("%s\n" % (s,))
    if opts.now is not None:
        MyTime.setTime(opts.now)
    # The encoding default is the locale's; a test must not depend on it.
    if opts.encoding in (None, "", "ANSI_X3.4-1968", "ascii", "US-ASCII"):
        opts.encoding = "UTF-8"
    # Fail2banRegex reads these from its own (unextended) option set.
    del opts.json
    del opts.now

    f2b = f2br.Fail2banRegex(opts)
    if not f2b.readRegex(regex, "fail"):
        return 255
    if len(args) == 3 and not f2b.readRegex(args[2], "ignore"):
        return 255

    out = sys.stdout
    lineno = 0
    for line in FileContainer(log, opts.encoding, doOpen=True):
        lineno += 1
        line = line.rstrip("\r\n")
        if line.startswith("#") or not line:
            continue  # as Fail2banRegex.process does
        _, found, _ = f2b.testRegex(line)
        for match in found or ():
            fid, date, fail = match[1], match[2], match[3]
            if fid is None or fail.get("nofail"):
                continue
            out.write(json.dumps({"lineno": lineno, "id": str(fid), "time": date,
                                  "fail": fail_dict(fail)}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
