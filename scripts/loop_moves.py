#!/usr/bin/env python3
"""Register copies and stack traffic inside the innermost loops of a binary's kernels.

    scripts/loop_moves.py build/benchmarks/bench_gemm [PATTERN] [--min N]

Disassembles BINARY with objdump and, for every function whose name contains PATTERN
(default: onebit::kernels), finds its innermost loops (a conditional jump backward with no other
one inside its range) and prints, per loop, its instruction count, its register-to-register
vector moves (vmov* %zmmA,%zmmB and the ymm/xmm forms) and its vector loads and stores on the
stack. A hot loop of a kernel should show neither: register copies there mean the compiler did
not keep an accumulator in one register across the loop (g++ 12 does this after a cast of the
accumulator to its low half following the loop, see docs/results.md, "Register copies under
g++ 12"), and stack traffic means it spilled. Loops with at least N of both together are
printed (default 1), worst first.

    scripts/loop_moves.py BINARY PATTERN --require-clean

is the regression check CTest runs (benchmarks/CMakeLists.txt): it fails, listing them, if any
innermost loop of a function matching PATTERN has a move or a stack access, or if no function
matches at all (a renamed kernel must not pass unseen).
"""
import argparse
import re
import signal
import subprocess
import sys

# A loop ends in a conditional jump back; an unconditional one back is usually code the
# compiler placed out of line returning to its path, not a loop.
JUMP = re.compile(r'j(?!mp)\w+\s+([0-9a-f]+)')
LINE = re.compile(r'\s*([0-9a-f]+):\s+(.*)')
MOVE = re.compile(r'vmov\w* %[xyz]mm\d+,%[xyz]mm\d+$')


def loops(instructions):
    """Innermost loops: the instructions from the target of a conditional backward jump to the
    jump, for those with no other such jump inside."""
    backward = []
    for address, text in instructions:
        m = JUMP.match(text)
        if m and int(m.group(1), 16) <= address:
            backward.append((int(m.group(1), 16), address))
    for target, end in backward:
        if any(target <= t and e < end for t, e in backward if (t, e) != (target, end)):
            continue
        yield [x for x in instructions if target <= x[0] <= end]


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quietly stop when piped into head
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('binary')
    parser.add_argument('pattern', nargs='?', default='onebit::kernels')
    parser.add_argument('--min', type=int, default=1, help='least moves + stack accesses shown')
    parser.add_argument('--require-clean', action='store_true',
                        help='exit 1 unless PATTERN matches and its loops have none')
    args = parser.parse_args()
    dump = subprocess.run(['objdump', '-d', '--no-show-raw-insn', '-C', args.binary],
                          capture_output=True, text=True, check=True).stdout
    found = []
    matched = 0
    for function in re.split(r'\n(?=[0-9a-f]+ <)', dump):
        name = function.split('\n', 1)[0]
        if args.pattern not in name:
            continue
        matched += 1
        instructions = [(int(m.group(1), 16), m.group(2))
                        for m in map(LINE.match, function.split('\n')[1:]) if m]
        for body in loops(instructions):
            moves = sum(1 for _, text in body if MOVE.match(text))
            stack = sum(1 for _, text in body if 'rsp' in text and 'mm' in text)
            if moves + stack >= (1 if args.require_clean else args.min):
                found.append((moves + stack, len(body), moves, stack, name[name.find('<'):]))
    for _, size, moves, stack, name in sorted(set(found), reverse=True):
        print(f'{size:5d} instructions {moves:3d} moves {stack:3d} stack  {name[:160]}')
    if args.require_clean:
        if matched == 0:
            print(f'loop_moves: no function in {args.binary} matches {args.pattern!r}')
            return 1
        if found:
            print(f'loop_moves: {len(found)} loop(s) of {args.pattern!r} keep values out of '
                  'their registers (above)')
            return 1
        print(f'loop_moves: {matched} function(s) matching {args.pattern!r}, every innermost '
              'loop free of register copies and stack accesses')
    return 0


if __name__ == '__main__':
    sys.exit(main())
