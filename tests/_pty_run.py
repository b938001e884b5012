"""Run a command in a pseudo-terminal of a given size and read back what the screen shows
(for the CLI tests of progress bars: tqdm draws only on a terminal)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_pty(argv: list[str], columns: int = 80, rows: int = 24,
               env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str]:
    """(exit status, raw output) of ``argv`` run with stdout and stderr on a pty of
    ``columns`` x ``rows`` (``COLUMNS`` / ``LINES`` set to match)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**(env or os.environ), "COLUMNS": str(columns), "LINES": str(rows)}
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                         close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the pty
                    break
                if not data:
                    break
                chunks.append(data)
            elif p.poll() is not None:
                break
        else:
            p.kill()
    finally:
        os.close(master)
    rc = p.wait(timeout=30)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(raw: str) -> list[str]:
    """The lines a terminal would show at the end: ANSI codes dropped, each line as left by
    its last carriage return (a bar redraw)."""
    text = _ANSI.sub("", raw).replace("\r\n", "\n")
    return [line.split("\r")[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
            for line in text.split("\n")]


if __name__ == "__main__":  # python tests/_pty_run.py COLUMNS cmd...
    rc, out = run_in_pty(sys.argv[2:], columns=int(sys.argv[1]))
    print("\n".join(screen_lines(out)))
    sys.exit(rc)
