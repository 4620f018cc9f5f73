"""Mount a version's sandbox at the real ``/kaggle`` and exec the kernel (stdlib only).

The runner starts this file as ``unshare -Urmp [-n] --kill-child -- python -I -S sandbox.py SPEC.json``,
so it runs as root (and pid 1) of a fresh user + mount + pid (+ network) namespace, where an
unprivileged user may bind-mount and chroot without touching the host:

1. make every mount private (nothing leaks back to the host);
2. build a new root on a tmpfs: bind every top-level entry of ``/`` into it, plus
   ``<sandbox>/kaggle`` at ``/kaggle``;
3. bind each input read-only under ``/kaggle/input/...``, then ``/kaggle/input`` itself read-only;
4. with a network namespace, bring ``lo`` up (notebook kernels talk over loopback) and
   nothing else: no route leaves the machine;
5. chroot, chdir to ``/kaggle/working``, run the kernel command as our child; when it ends we
   exit, and the OS kills whatever it left behind in the pid namespace.

Failures exit with code 97 and a one-line reason on stderr, which the runner reports.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import json
import os
import socket
import struct
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
ST_FLAGS = {  # statvfs f_flag -> mount flag (locked flags must be kept on a remount)
    1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}
FAIL = 97

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None,
                     ctypes.c_ulong(flags), data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} -> {dst}: {os.strerror(err)}")


def _bind(src: str, dst: str, readonly: bool) -> None:
    _mount(src, dst, None, MS_BIND | MS_REC)
    if readonly:
        st = os.statvfs(dst)
        keep = 0
        for bit, flag in ST_FLAGS.items():
            if st.f_flag & bit:
                keep |= flag
        _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"\x00" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, siocgifflags, ifreq))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b"\x00" * 14))


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    newroot: str = spec["newroot"]
    kaggle_dir: str = spec["kaggle_dir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(newroot, exist_ok=True)
    _mount("tmpfs", newroot, "tmpfs", 0, "mode=0755")
    for name in sorted(os.listdir("/")):
        if name == "kaggle":
            continue
        src = "/" + name
        dst = os.path.join(newroot, name)
        try:
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isdir(src):
                os.mkdir(dst)
                if name == "proc" and spec.get("pidns"):
                    try:  # a /proc that shows only the sandbox's processes
                        _mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                        continue
                    except OSError:
                        pass
                _mount(src, dst, None, MS_BIND | MS_REC)
            elif os.path.isfile(src):
                open(dst, "w").close()
                _mount(src, dst, None, MS_BIND)
        except OSError:
            continue  # an entry we may not bind (rare); the kernel simply will not see it
    target = os.path.join(newroot, "kaggle")
    os.mkdir(target)
    _bind(kaggle_dir, target, readonly=False)
    input_dir = os.path.join(target, "input")
    for mount in spec.get("inputs", []):
        dst = os.path.join(input_dir, mount["dst"])
        os.makedirs(dst, exist_ok=True)
    for mount in spec.get("inputs", []):
        _bind(mount["src"], os.path.join(input_dir, mount["dst"]), readonly=True)
    _bind(input_dir, input_dir, readonly=True)
    if spec.get("netns"):
        _loopback_up()
    os.chroot(newroot)
    os.chdir(spec.get("cwd", "/kaggle/working"))
    argv: list[str] = spec["argv"]
    env: dict[str, str] = spec["env"]
    if not spec.get("pidns"):
        os.execve(argv[0], argv, env)
    # We are pid 1 of a new pid namespace: run the kernel as a child and reap orphans; when we
    # exit, the OS kills every process left in the namespace (stray daemons, notebook kernels).
    child = os.fork()
    if child == 0:
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as exc:  # report and exit; the runner turns this into a failure message
        print(f"kagglekit-emulator sandbox: {exc}", file=sys.stderr, flush=True)
        sys.exit(FAIL)
