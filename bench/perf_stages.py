#!/usr/bin/python3
"""perf_stages.py - where a profile's samples go, by stage of Wharf's code.

Reads the call stacks of a `perf record -g` or `--call-graph dwarf`
profile (bench/as2_bench.sh with BENCH_AS2_PERF=1 or dwarf writes
perf-a.data and perf-b.data) and answers one of three questions:

  stages F1,F2,...   each sample goes to the innermost of the listed
                     functions on its stack ("other" when none is):
                     the table of docs/performance.md, "Where each
                     message's CPU goes" and later sections
  under F [DEPTH]    of the samples with F on the stack, what F called
                     (DEPTH frames below F, default 1)
  callers F [DEPTH]  of the samples with F on the stack, who called F
                     (DEPTH frames above F, default 1)
  entries PROCESSES  a whole-machine profile (BENCH_AS2_PERF=system,
                     perf-all.data): each sample goes to its process
                     (command:pid for the commands listed, comma
                     separated, e.g. wharf,wharf-keys; the command
                     alone for the others) and to "user" or the kernel
                     entry it is under: the system call
                     (__x64_sys_*), the interrupt or fault (asm_*), a
                     kernel thread (ret_from_fork), the idle loop

usage: perf_stages.py PROFILE QUESTION ARG [DEPTH] [--cpu-ms MS]

PROFILE is a perf.data file (perf script is run on it) or the saved
output of `perf script` (for entries: `perf script -F
comm,pid,ip,sym,dso`, whose header lines give the process, not the
thread). With --cpu-ms (the process's CPU ms per
message, from the run's summary.txt) each line also gives its share of
all the process's samples as ms of that CPU per message. Inlined frames
count as the functions they are. Standard library and perf only.
"""
import collections
import re
import subprocess
import sys

FRAME = re.compile(r"\s+[0-9a-f]+\s+(\S+)")


def script_text(path, fields=()):
    """perf script's output for PATH (a perf.data file: perf script is run
    on it, with -F FIELDS if given), or PATH's text (its saved output)."""
    if path.endswith(".data"):
        return subprocess.run(["perf", "script", "-i", path, *fields],
                              capture_output=True, text=True,
                              errors="replace", check=True).stdout
    with open(path, errors="replace") as f:
        return f.read()


def read_samples(path, fields=()):
    """(header, stack, in the kernel) of each sample, stack innermost first;
    FIELDS: perf script's -F, if not its default."""
    text = script_text(path, fields)
    samples, head, cur, kernel = [], None, None, False
    for line in text.splitlines():
        if not line.strip():
            if cur is not None:
                samples.append((head, cur, kernel))
            cur = None
        elif cur is None:
            head, cur, kernel = line, [], False   # the sample's header line
        else:
            m = FRAME.match(line)
            if m:
                if not cur:
                    kernel = "[kernel.kallsyms]" in line
                cur.append(re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)))
    if cur is not None:
        samples.append((head, cur, kernel))
    return samples


def read_stacks(path):
    """The stacks of the profile, innermost frame first."""
    return [stack for _, stack, _ in read_samples(path)]


def by_stage(stacks, names):
    wanted = set(names)
    count = collections.Counter()
    for s in stacks:
        count[next((f for f in s if f in wanted), "other")] += 1
    return count, len(stacks)


def around(stacks, fn, depth, below):
    count, n = collections.Counter(), 0
    for s in stacks:
        if fn not in s:
            continue
        n += 1
        i = s.index(fn)
        part = s[max(0, i - depth):i][::-1] if below else s[i + 1:i + 1 + depth]
        count[" > ".join(part) or "(itself)"] += 1
    return count, n


def entry(stack, kernel):
    if not kernel:
        return "user"
    for i, f in enumerate(stack):
        if f.startswith(("__x64_sys_", "asm_", "ret_from_fork")):
            return f
        if f == "do_idle":
            return "idle"
        if f == "do_syscall_64":    # read, write, clone: no __x64_sys_ frame
            return "syscall: " + (stack[i - 1] if i else "entry")
    return "kernel, entry not on the stack"


def by_entry(samples, procs):
    """Samples by process (header: COMMAND PID ...) and kernel entry."""
    count = collections.Counter()
    for head, stack, kernel in samples:
        fields = head.split()
        comm = fields[0] if fields else "?"
        pid = fields[1] if len(fields) > 1 else "?"
        who = "%s:%s" % (comm, pid) if comm in procs else comm
        count["%-24s %s" % (who, entry(stack, kernel))] += 1
    return count, len(samples)


def options(argv):
    opts, rest, i = {}, [], 0
    while i < len(argv):
        if argv[i] == "--cpu-ms" and i + 1 < len(argv):
            opts[argv[i]] = float(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return opts, rest


def main(argv):
    opts, args = options(argv[1:])
    if len(args) < 3 or args[1] not in ("stages", "under", "callers",
                                        "entries"):
        sys.stderr.write(__doc__)
        return 2
    if args[1] == "entries":
        samples = read_samples(args[0], ("-F", "comm,pid,ip,sym,dso"))
        stacks = [stack for _, stack, _ in samples]
    else:
        stacks = read_stacks(args[0])
    if not stacks:
        sys.stderr.write("perf_stages: no samples in %s\n" % args[0])
        return 1
    depth = int(args[3]) if len(args) > 3 else 1
    if args[1] == "stages":
        count, base = by_stage(stacks, args[2].split(","))
    elif args[1] == "entries":
        count, base = by_entry(samples, set(args[2].split(",")))
    else:
        count, base = around(stacks, args[2], depth, args[1] == "under")
        print("%d of %d samples have %s on the stack" % (base, len(stacks),
                                                          args[2]))
    ms = opts.get("--cpu-ms")      # a share of all the process's samples
    for name, n in count.most_common():
        share = n / len(stacks)
        line = "%7d  %5.1f%%  %s" % (n, 100 * n / base, name)
        if ms is not None:
            line = "%7d  %5.1f%%  %6.3f ms  %s" % (n, 100 * n / base,
                                                   share * ms, name)
        print(line)
    print("%7d samples" % len(stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
