"""The ``muse`` entry point's handling of errors that are not the command's own."""

import subprocess
import sys

_PRINTS_A_LOT = """
import muse_ff.cli.evaluate as ev
def run(args):
    for k in range(200000):
        print(k, "x" * 50)
    return 0
ev.run = run
from muse_ff.cli.main import main
raise SystemExit(main(["eval", "model.pt", "data.extxyz"]))
"""


def test_a_closed_pipe_ends_the_command_quietly():
    """`muse eval ... --json | head` printed 'muse eval: error: Broken pipe'."""
    proc = subprocess.Popen([sys.executable, "-c", _PRINTS_A_LOT], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(100)
    proc.stdout.close()  # the reader goes away, as `head` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""
