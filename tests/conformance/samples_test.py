#!/usr/bin/env python3
"""Conformance: bantam-regex must satisfy fail2ban's own annotated filter samples.

fail2ban ships, for each stock filter, a sample log (tests/files/logs/NAME)
whose lines are annotated with the failure fail2ban must find there:

  # failJSON: {"time": "2005-08-14T10:00:00", "match": true, "host": "192.0.2.1"}
  <the line it describes>

plus directives that choose filter options for the lines that follow
(filterOptions, a dict or a list of dicts: one filter per dict), set options
common to a file (fileOptions) and include another sample file (addFILE).
fail2ban's test (fail2ban/tests/samplestestcase.py) walks each file with one
persistent Filter per option combination ("variant") and checks every line.

This script walks the files the same way, but instead of calling fail2ban's
Filter it writes the lines each variant would process to a file (keeping a
map back to the sample's file:line), runs

  bantam-regex --json --raw --now 1124013600 -c /etc/fail2ban FILE 'NAME[opt=val,...]'

once per variant under fail2ban's test time zone, and checks every line:

  - an annotated line matches iff "match" is true, with exactly one failure;
  - its failure has the listed host (the failure id), time (exact float
    equality with mktime() of the local time, as fail2ban's test does), user,
    users (as sets), attempts (= number of matched lines) and any other key;
  - a line without annotation produces no failure.

Variants with logtype=journal get the line as systemd's backend would: with
test.prefix-line prepended and its time being "now" (--datepattern '{NONE}'
here; fail2ban's test passes the time beside the line). test.condition and
failJSON "constraint" are evaluated as fail2ban's test does, with `name` and
`opts` in scope; a constraint that fails means the variant never sees the line.

Options other than test.* keys (including logtype, which selects the line
prefix in common.conf) are passed as filter options, as fail2ban's test does.

--oracle-selftest runs fail2ban's own Fail2banRegex (fail2ban_regex_json.py
under /usr/bin/python3) as the implementation under test: every annotation
must pass, which proves the walker. fail2ban not installed is a failure, not a
skip.

Exit status: 0 if every check holds, 1 otherwise, 2 on usage errors.
"""

import argparse
import datetime
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

F2B_PACKAGE = "/usr/lib/python3/dist-packages/fail2ban"
SAMPLES_DIR = os.path.join(F2B_PACKAGE, "tests", "files", "logs")
CONFIG_DIR = "/etc/fail2ban"
# Ends the sentence naming a missing package.
SETUP = "; set up with packaging/setup.sh"
F2B_PYTHON = "/usr/bin/python3"
ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail2ban_regex_json.py")

# fail2ban's tests/utils.py: TEST_NOW and the time zone all sample times use.
TEST_NOW = 1124013600
TEST_TZ = "CET-01CEST-02,M3.5.0,M10.5.0"
TIMEOUT_SECONDS = 120

DIRECTIVE_RE = re.compile(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")
# Keys of a failJSON that are not fields of the failure.
NON_FIELD_KEYS = ("time", "match", "desc", "constraint")


# ---------------------------------------------------------------------------
# Walking the samples (mirrors samplestestcase.testSampleRegexsFactory)


class SampleLine:
    """One line a variant processes, with where it came from and what it must give."""

    def __init__(self, filename, lineno, text, faildata, annotated):
        self.filename = filename
        self.lineno = lineno
        self.text = text
        self.faildata = faildata
        self.annotated = annotated

    @property
    def where(self):
        return "%s:%d" % (self.filename, self.lineno)


class Variant:
    """One persistent filter of fail2ban's test: a filter name and its options."""

    def __init__(self, name, flt_name, opts):
        self.name = name
        self.flt_name = flt_name
        self.opts = opts
        self.filter_opts = dict((k, v) for k, v in opts.items() if not k.startswith("test."))
        self.journal = opts.get("logtype") == "journal"
        self.lines = []
        self.command = None  # set when run

    def label(self):
        return filter_spec(self.name, self.filter_opts) if self.filter_opts else self.name


class WalkError(Exception):
    pass


def read_sample_lines(path):
    """The lines of PATH as fail2ban's FileContainer yields them (UTF-8)."""
    with open(path, "rb") as f:
        data = f.read()
    lines = []
    for raw in data.split(b"\n"):
        lines.append(raw)
    # A file ending in "\n" yields no last empty line; one not ending in
    # "\n" still yields its last line (the test sets waitForLineEnd=False).
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for raw in lines:
        try:
            text = raw.decode("utf-8", "strict")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
        out.append(text.rstrip("\r\n"))
    return out


def walk_samples(name, samples_dir):
    """Returns (variants in order of creation, notes) for filter NAME."""
    variants = {}
    order = []

    def variant_for(flt_name, opts):
        v = variants.get(flt_name)
        if v is None:
            v = variants[flt_name] = Variant(name, flt_name, opts)
            order.append(v)
        return v

    filenames = [name]
    common_opts = {}
    faildata = {}
    filter_tests = None
    i = 0
    while i < len(filenames):
        filename = filenames[i]
        i += 1
        path = os.path.join(samples_dir, filename)
        if not os.path.isfile(path):
            raise WalkError("no sample log %s" % path)
        lines = read_sample_lines(path)
        ignore_block = False
        lnnum = 0
        it = iter(lines)
        for line in it:
            lnnum += 1
            m = DIRECTIVE_RE.match(line)
            if m:
                try:
                    faildata = json.loads(m.group(2))
                except ValueError as e:
                    raise WalkError("%s: %s:%d" % (e, filename, lnnum))
                kind = m.group(1)
                if kind == "fileOptions":
                    common_opts = faildata
                    continue
                if kind == "filterOptions":
                    filter_tests = []
                    ignore_block = False
                    for fd in (faildata if isinstance(faildata, list) else [faildata]):
                        if common_opts:
                            opts = common_opts.copy()
                            opts.update(fd)
                        else:
                            opts = fd
                        if not isinstance(opts, dict):
                            raise WalkError("filterOptions not a dict at %s:%d" % (filename, lnnum))
                        if opts.get("test.condition"):
                            ignore_block = not eval(opts.get("test.condition"),
                                                    {}, {"name": name, "opts": opts})
                        if not ignore_block:
                            flt_opts = dict((k, v) for k, v in opts.items()
                                            if not k.startswith("test."))
                            flt_name = opts.get("test.filter-name")
                            if not flt_name:
                                flt_name = str(flt_opts) if flt_opts else ""
                            flt_name = name + flt_name
                            filter_tests.append((variant_for(flt_name, opts), opts))
                    continue
                if kind == "addFILE":
                    filenames.append(faildata)
                    continue
                # failJSON: the next line is the one it describes, whatever it is.
                try:
                    line = next(it)
                except StopIteration:
                    break
                lnnum += 1
                annotated = True
            elif ignore_block or line.startswith("#") or not line.strip():
                continue
            else:
                faildata = {}
                annotated = False
            if ignore_block:
                continue
            if not filter_tests:
                filter_tests = [(variant_for(name, {}), {})]
            for variant, opts in filter_tests:
                constraint = faildata.get("constraint")
                if constraint and not eval(constraint, {}, {"name": name, "opts": opts}):
                    continue
                text = line
                if opts.get("logtype") == "journal" and opts.get("test.prefix-line"):
                    text = opts.get("test.prefix-line") + text
                variant.lines.append(SampleLine(filename, lnnum, text, faildata, annotated))
    return order


def quote_option(value):
    """VALUE in the syntax fail2ban's extractOptions() reads back unchanged."""
    value = str(value)
    if value == value.strip() and not re.search(r"[,\]\"']", value):
        return value
    if '"' not in value:
        return '"%s"' % value
    if "'" not in value:
        return "'%s'" % value
    raise ValueError("option value holds both quote characters: %r" % value)


def filter_spec(name, filter_opts):
    if not filter_opts:
        return name
    return "%s[%s]" % (name, ", ".join("%s=%s" % (k, quote_option(v))
                                        for k, v in filter_opts.items()))


# ---------------------------------------------------------------------------
# Checking


def expected_time(t):
    """fail2ban's test: mktime() of the annotation's local time, plus microseconds."""
    try:
        local = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        local = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f")
    return time.mktime(local.timetuple()) + local.microsecond / 1000000.0


def fmt_time(t):
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return repr(t)
    try:
        return "%r (%s UTC)" % (t, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)))
    except (TypeError, ValueError, OverflowError):
        return repr(t)


def parse_ip(text):
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_network(text, strict=False) if "/" in text \
            else ipaddress.ip_address(text)
    except ValueError:
        return None


def same_id(got, want):
    """fail2ban compares an IPAddr id with a string by address (and prefix)."""
    if got == want:
        return True
    a, b = parse_ip(got), parse_ip(want)
    return a is not None and a == b


def sorted_repr(v):
    if isinstance(v, (list, tuple, set)):
        return sorted((sorted_repr(x) for x in v), key=repr)
    if isinstance(v, dict):
        return dict((k, sorted_repr(x)) for k, x in v.items())
    return v


def check_failure(sample, failure):
    """Problems with FAILURE (bantam's JSON object) against SAMPLE's annotation."""
    problems = []
    fail = failure.get("fail") or {}
    for k, want in sample.faildata.items():
        if k in NON_FIELD_KEYS:
            continue
        got = fail.get(k)
        if got is None:
            if k == "host":
                # The failure id: fail2ban's IPAddr equals a string by address
                # when the id came from ip4/ip6, by text otherwise.
                got = failure.get("id")
                by_addr = fail.get("ip4") is not None or fail.get("ip6") is not None
                if not (got == want or (by_addr and same_id(got, want))):
                    problems.append("host: expected %r, got id %r" % (want, got))
                continue
            if k == "attempts":
                got = len(fail.get("matches") or [])
        if isinstance(got, (list, dict)) or isinstance(want, (list, dict)):
            if sorted_repr(got) != sorted_repr(want):
                problems.append("%s: expected %r, got %r (compared sorted)" % (k, want, got))
            continue
        if got != want:
            problems.append("%s: expected %r, got %r" % (k, want, got))
    t = sample.faildata.get("time")
    if t is not None:
        want = expected_time(t)
        got = failure.get("time")
        if not isinstance(got, (int, float)) or isinstance(got, bool) or got != want:
            diff = (" (diff %.3f s)" % (got - want)) if isinstance(got, (int, float)) else ""
            problems.append("time: expected %s [%s], got %s%s" % (
                fmt_time(want), t, fmt_time(got), diff))
    return problems


class VariantResult:
    def __init__(self, variant):
        self.variant = variant
        self.annotated_total = 0
        self.annotated_passed = 0
        self.plain_total = 0
        self.plain_passed = 0
        self.failures = []  # (where, message lines)
        self.error = None

    @property
    def passed(self):
        return self.error is None and not self.failures


def evaluate(variant, failures, error):
    """Checks every line of VARIANT against FAILURES (parsed JSON, by lineno)."""
    res = VariantResult(variant)
    by_line = {}
    for f in failures:
        by_line.setdefault(f.get("lineno"), []).append(f)
    for idx, sample in enumerate(variant.lines, 1):
        if sample.annotated:
            res.annotated_total += 1
        else:
            res.plain_total += 1
        if error is not None:
            continue
        got = by_line.pop(idx, [])
        want_match = bool(sample.faildata.get("match", False))
        problems = []
        if not got:
            if want_match:
                problems.append("not matched, but should have been")
        elif not want_match:
            problems.append("matched, but should not have been: %s" % (
                "; ".join(summarize(f) for f in got)))
        elif len(got) != 1:
            problems.append("%d failures, expected exactly one: %s" % (
                len(got), "; ".join(summarize(f) for f in got)))
        else:
            problems = check_failure(sample, got[0])
            if problems:
                problems.append("got: %s" % summarize(got[0]))
        if problems:
            res.failures.append((sample, problems))
        elif sample.annotated:
            res.annotated_passed += 1
        else:
            res.plain_passed += 1
    if error is not None:
        res.error = error
    for lineno, extra in sorted(by_line.items(), key=lambda kv: repr(kv[0])):
        res.failures.append((None, ["failure reported for line %r, which is not in the input "
                                    "(%d lines): %s" % (lineno, len(variant.lines),
                                                       summarize(extra[0]))]))
    return res


def summarize(f):
    fail = dict(f.get("fail") or {})
    matches = fail.pop("matches", None)
    s = "id=%r time=%s fail=%s" % (f.get("id"), fmt_time(f.get("time")),
                                  json.dumps(fail, sort_keys=True))
    if matches is not None:
        s += " matches=%d" % len(matches)
    return s


# ---------------------------------------------------------------------------
# Running the implementation under test


def variant_command(variant, command_prefix, path, config_dir):
    cmd = list(command_prefix) + ["--json", "--raw", "--now", str(TEST_NOW), "-c", config_dir]
    if variant.journal:
        cmd += ["--datepattern", "{NONE}"]
    return cmd + [path, filter_spec(variant.name, variant.filter_opts)]


def run_variant(variant, command_prefix, workdir, config_dir):
    """Runs the implementation on VARIANT's lines; returns (failures, error)."""
    safe = re.sub(r"[^\w.-]+", "_", variant.flt_name)[:80]
    path = os.path.join(workdir, "%s.%d.log" % (safe, id(variant)))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for s in variant.lines:
            f.write(s.text + "\n")
    try:
        cmd = variant_command(variant, command_prefix, path, config_dir)
    except ValueError as e:
        return [], "cannot express the filter options: %s" % e
    variant.command = cmd
    env = dict(os.environ)
    env["TZ"] = TEST_TZ
    env.setdefault("LC_ALL", "C.UTF-8")
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return [], "timed out after %d s: %s" % (TIMEOUT_SECONDS, shell_join(cmd))
    except OSError as e:
        return [], "cannot run %s: %s" % (cmd[0], e)
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        return [], "exit status %d: %s\n      stderr: %s" % (
            proc.returncode, shell_join(cmd), tail(stderr))
    failures = []
    for n, raw in enumerate(proc.stdout.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:
            return [], "stdout line %d is not JSON (%s): %r" % (n, e, raw[:200])
        if not isinstance(obj, dict):
            return [], "stdout line %d is not a JSON object: %r" % (n, raw[:200])
        failures.append(obj)
    return failures, None


def shell_join(cmd):
    import shlex
    return " ".join(shlex.quote(c) for c in cmd)


def tail(text, n=5):
    lines = text.splitlines()
    return "\n              ".join(lines[-n:]) if lines else "(empty)"


# ---------------------------------------------------------------------------


def stock_filters(config_dir):
    """Filters fail2ban's sample test covers: filter.d/*.conf but *common.conf."""
    names = []
    for fn in sorted(os.listdir(os.path.join(config_dir, "filter.d"))):
        if fn.endswith(".conf") and not fn.endswith("common.conf") and not fn.startswith("."):
            names.append(fn[:-len(".conf")])
    return names


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bantam", help="the bantam program; bantam-regex is beside it")
    parser.add_argument("--bantam-regex", help="the bantam-regex program under test")
    parser.add_argument("--source-dir", help="repository root (accepted for ctest; unused)")
    parser.add_argument("--config-dir", default=CONFIG_DIR,
                        help="fail2ban configuration (read only; default %(default)s)")
    parser.add_argument("--samples-dir", default=SAMPLES_DIR,
                        help="fail2ban's annotated sample logs (default %(default)s)")
    parser.add_argument("--filter", action="append", metavar="NAME",
                        help="check only this filter's samples (repeatable)")
    parser.add_argument("--oracle-selftest", action="store_true",
                        help="test fail2ban itself (%s %s) instead of bantam-regex"
                        % (F2B_PYTHON, os.path.basename(ORACLE)))
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2,
                        help="variants run in parallel (default: CPU count)")
    parser.add_argument("--max-failures", type=int, default=10, metavar="N",
                        help="diagnostics shown per variant (default 10; 0: all)")
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the command line of every variant")
    args = parser.parse_args(argv)

    if args.oracle_selftest:
        command_prefix = [F2B_PYTHON, ORACLE]
        under_test = "fail2ban (oracle self-test: %s)" % ORACLE
    else:
        program = args.bantam_regex
        if not program:
            if not args.bantam:
                parser.error("give --bantam-regex PATH or --bantam PATH (or --oracle-selftest)")
            program = os.path.join(os.path.dirname(os.path.abspath(args.bantam)), "bantam-regex")
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            print("FATAL: bantam-regex not found or not executable: %s" % program)
            return 1
        command_prefix = [os.path.abspath(program)]
        under_test = command_prefix[0]

    # fail2ban's samples and configuration are the test's input: without them
    # the test has nothing to check, which must not look like success.
    for path, what in ((args.samples_dir, "fail2ban's sample logs"),
                       (os.path.join(args.config_dir, "filter.d"), "fail2ban's filter.d")):
        if not os.path.isdir(path):
            print("FATAL: needs %s at %s (Debian package fail2ban)%s" % (what, path, SETUP))
            return 1
    if args.oracle_selftest and not os.access(F2B_PYTHON, os.X_OK):
        print("FATAL: needs %s, fail2ban's interpreter (Debian package python3)%s"
              % (F2B_PYTHON, SETUP))
        return 1

    os.environ["TZ"] = TEST_TZ
    time.tzset()

    names = stock_filters(args.config_dir)
    if args.filter:
        unknown = [n for n in args.filter if n not in names]
        if unknown:
            parser.error("unknown filter(s) %s (not in %s/filter.d)" % (
                ", ".join(unknown), args.config_dir))
        names = [n for n in names if n in args.filter]

    print("under test: %s; config: %s; samples: %s" % (under_test, args.config_dir,
                                                       args.samples_dir))
    per_filter = []  # (name, [variants] or error)
    for name in names:
        if not os.path.isfile(os.path.join(args.samples_dir, name)):
            per_filter.append((name, "no sample log"))
            continue
        try:
            per_filter.append((name, walk_samples(name, args.samples_dir)))
        except WalkError as e:
            per_filter.append((name, "cannot walk samples: %s" % e))

    workdir = tempfile.mkdtemp(prefix="bantam-samples-")
    jobs = [v for _, vs in per_filter if isinstance(vs, list) for v in vs]
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(
                lambda v: run_variant(v, command_prefix, workdir, args.config_dir), jobs))
    finally:
        if args.keep:
            print("kept inputs under %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = dict((id(v), evaluate(v, *o)) for v, o in zip(jobs, outcomes))

    tot_a = pass_a = tot_p = pass_p = 0
    failed_variants = 0
    walk_errors = 0
    for name, variants in per_filter:
        if not isinstance(variants, list):
            print("FAIL %s: %s" % (name, variants))
            walk_errors += 1
            continue
        rs = [results[id(v)] for v in variants]
        fa = sum(r.annotated_total for r in rs)
        fp = sum(r.annotated_passed for r in rs)
        ok = all(r.passed for r in rs)
        print("%s %s: %d/%d annotations, %d variant(s)" % (
            "PASS" if ok else "FAIL", name, fp, fa, len(rs)))
        for r in rs:
            tot_a += r.annotated_total
            pass_a += r.annotated_passed
            tot_p += r.plain_total
            pass_p += r.plain_passed
            if not r.passed:
                failed_variants += 1
            print("  %s %s: %d/%d annotations, %d/%d unannotated lines unmatched" % (
                "ok  " if r.passed else "FAIL", r.variant.label(), r.annotated_passed,
                r.annotated_total, r.plain_passed, r.plain_total))
            if args.verbose and r.variant.command:
                print("    $ TZ=%s %s" % (TEST_TZ, shell_join(r.variant.command)))
            if r.error:
                print("    error: %s" % r.error)
            shown = r.failures if not args.max_failures else r.failures[:args.max_failures]
            for sample, problems in shown:
                if sample is None:
                    print("    %s" % problems[0])
                    continue
                print("    %s: %s" % (sample.where, problems[0]))
                print("      line: %s" % sample.text)
                print("      want: %s" % json.dumps(
                    dict((k, v) for k, v in sample.faildata.items() if k != "desc"),
                    sort_keys=True))
                for p in problems[1:]:
                    print("      %s" % p)
            if len(shown) < len(r.failures):
                print("    ... %d more (--max-failures 0 shows all)" % (
                    len(r.failures) - len(shown)))
        sys.stdout.flush()

    print("variants: %d/%d passed" % (len(jobs) - failed_variants, len(jobs)))
    print("unannotated lines: %d/%d without failure" % (pass_p, tot_p))
    print("annotations: %d/%d passed" % (pass_a, tot_a))
    ok = failed_variants == 0 and walk_errors == 0 and tot_a > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
