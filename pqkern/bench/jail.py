"""Operating-system jail for the worker process that runs the kernel (Linux; immutable bench).

The worker calls :func:`enter` once: after it has imported numpy, numba and the harness and
opened or mapped its fixture files, and before it imports the kernel. From then on, for the
rest of the process's life (nothing can lift it):

Landlock (file system and scopes; checked when a file is opened, so descriptors and mappings
opened before :func:`enter` keep working):
  - writing, creating, removing, renaming or truncating files only beneath ``private_tmp``;
  - reading only the Python installation (``sys.base_prefix``, ``sys.prefix``, site-packages),
    the system libraries (/lib, /lib64, /usr/lib, /usr/lib64, /usr/local/lib, /etc/ld.so.cache),
    /dev/null, /dev/urandom, /proc/<this pid>, /sys/devices/system/cpu and ``private_tmp``:
    never the repository, the data directory, ``results.tsv`` or ``trials/``, nor another
    process's /proc entries (ABI 3 at least: the first that handles truncation);
  - no TCP bind or connect (ABI 4), no signal to and no abstract unix socket of
    a process outside the jail (ABI 6 scopes), no ptrace of a process outside (Landlock's own rule).
seccomp-bpf (libseccomp through ``pyseccomp``; every call not listed is allowed):
  - no new process or program: execve, execveat, fork, vfork, clone without CLONE_THREAD, and
    every clone unless ``allow_threads``; clone3, whose flags a filter cannot read, fails with
    ENOSYS so that glibc falls back to clone;
  - no network: socket, socketpair (any family);
  - no reaching another process: ptrace, process_vm_readv/writev, pidfd_*, kill/tgkill/tkill/
    rt_(tg)sigqueueinfo aimed at any process but this one, fcntl F_SETOWN(_EX) and ioctl
    FIOSETOWN/SIOCSPGRP (SIGIO to another process), prlimit64/sched_set*/migrate_pages/
    move_pages on any pid but 0, setpriority, ioprio_set, setsid/setpgid (leaving the process
    group the runner kills at the time budget);
  - nothing that outlives the process: System V shared memory, message queues and semaphores,
    POSIX message queues, keyrings (keyctl, add_key, request_key);
  - no kernel attack surface: io_uring, bpf, perf_event_open, userfaultfd, mount (old and new
    API), umount2, unshare, setns, chroot, pivot_root, module loading, kexec, open_by_handle_at,
    syslog, ioctl TIOCSTI/TIOCLINUX (typing into the terminal).
Also: no_new_privs, every capability dropped (a root worker could otherwise raise its own
address-space cap, renice or mknod), the speculative-store-bypass mitigation not forced (it
would slow compute down), no core dumps, and the working directory moved to ``private_tmp``.

A forbidden system call kills the process at once (SECCOMP_RET_KILL_PROCESS: the parent sees
SIGSYS, :func:`describe_death` says why). A kill, not an error, because an error can be
swallowed: ``libc.system()`` would just return -1 and a kernel could try the next route and
still "pass"; the attempt itself must end the run. Landlock cannot kill: a forbidden open fails
with EACCES (PermissionError naming the file), which the worker reports as the kernel raising.

Threads: denied by default. numba's ``omp`` threading layer runs ``parallel=True``/``prange``
kernels in the calling thread when NUMBA_NUM_THREADS=1; its ``workqueue`` layer would start a
thread even then (and die). ``allow_threads=True`` (for more than one numba thread) allows clone
with CLONE_THREAD; threads created inside the jail inherit all of it. :func:`enter` refuses to
run while other threads exist: Landlock (ABI < 8) binds only the calling thread.

Using it, in the worker: start it with NUMBA_CACHE_DIR=<private_tmp>/numba_cache,
TMPDIR=<private_tmp>, NUMBA_THREADING_LAYER=omp, NUMBA_NUM_THREADS=<threads>, OMP_NUM_THREADS=1,
OPENBLAS_NUM_THREADS=1, MKL_NUM_THREADS=1 (numba reads them at import); import everything it
will need; call ``numba.np.ufunc.parallel._launch_threads()`` (loads the threading layer now,
which otherwise wants a semaphore in /dev/shm inside the jail; no thread at one thread); map
the fixture; copy the kernel file into ``private_tmp``; ``enter(private_tmp, allow_threads=
threads > 1, forbid=[repo, data_dir])``; then import the copy (registered in ``sys.modules``,
or numba's cache cannot load it again) and run it. On :class:`JailError` exit without running
the kernel: the process may be partly restricted.

Still trusted: everything inside the process. The jail cannot stop a kernel from changing
numba's configuration, patching numpy or the harness, or reading any memory or descriptor the
worker holds (keep the ground truth out of the worker); that is the static policy's job
(pqkern/bench/policy.py). Also trusted: the files readable above, the CPU time and memory the
kernel uses (the runner's budget and address-space cap), the descriptors inherited before
:func:`enter` (stdout, stderr, the runner's pipe), and whatever it leaves in ``private_tmp``
(delete it after the run).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import site
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["JailError", "describe_death", "enter", "landlock_abi", "readable_paths"]

MIN_LANDLOCK_ABI = 3  # 3 is the first ABI that handles truncation (else truncate("results.tsv") would pass)

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on every architecture.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_ABI1 = (1 << 13) - 1  # execute, read/write file, read dir, remove and make every kind of entry
_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_READ = _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE

_PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522
_CLONE_THREAD = 0x00010000
_F_SETOWN, _F_SETOWN_EX = 8, 15  # fcntl: send SIGIO/SIGURG for this descriptor to another process
_IOCTL_KILLED = (0x5412, 0x541C, 0x8901, 0x8902)  # TIOCSTI, TIOCLINUX (typing into a terminal), FIOSETOWN, SIOCSPGRP

_KILLED = (  # syscalls that end the process whatever their arguments
    "execve", "execveat", "fork", "vfork", "socket", "socketpair", "ptrace", "process_vm_readv", "process_vm_writev",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "setsid", "setpgid", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "mount",
    "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "unshare",
    "setns", "chroot", "pivot_root", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "swapon", "swapoff", "reboot", "acct", "quotactl", "iopl", "ioperm", "syslog",
    "setpriority", "ioprio_set",  # they reach other processes by pid, group or user
    "shmget", "shmat", "msgget", "msgsnd", "msgrcv", "semget", "semop", "semtimedop",  # System V IPC outlives ...
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",  # ... the process, like POSIX queues
)
_REQUIRED = {"execve", "execveat", "clone", "clone3", "socket", "ptrace", "kill", "tgkill"}  # must be filterable here
_SIGNALS_TO_SELF = ("kill", "tgkill", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")  # first argument: the target
# First argument a pid, allowed only as 0 (this process, what glibc and Python pass): not the runner, not another kernel.
_ONLY_PID_0 = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
               "migrate_pages", "move_pages")


class JailError(RuntimeError):
    """The jail cannot be applied on this machine (or in this process); the message says why."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(nr: int, *args) -> int:
    result = _libc.syscall(ctypes.c_long(nr), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def readable_paths(extra: Sequence[str | Path] = ()) -> list[Path]:
    """What the jail lets the process read (beside ``private_tmp``): existing paths, symlinks resolved."""
    python = {sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix, *site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        python.add(site.getusersitepackages())
    system = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/dev/urandom",
              "/sys/devices/system/cpu", f"/proc/{os.getpid()}"]
    found = {Path(p).resolve() for p in [*sorted(python), *system, *extra] if os.path.exists(p)}
    return sorted(found)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _landlock(private_tmp: Path, reads: list[Path], abi: int) -> None:
    fs = _FS_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(handled_access_fs=fs,
                        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                        scoped=(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        dev_null = _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE  # open("/dev/null", "w") truncates
        rules = [(p, _READ) for p in reads] + [(Path("/dev/null"), dev_null), (private_tmp, fs)]
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                allowed = (access if os.path.isdir(path) else access & _FILE_ONLY) & fs
                rule = _PathBeneath(allowed_access=allowed, parent_fd=fd)
                _syscall(_SYS_ADD_RULE, ctypes.c_long(ruleset), ctypes.c_long(_RULE_PATH_BENEATH), ctypes.byref(rule),
                         ctypes.c_uint32(0))
            finally:
                os.close(fd)
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_long(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _drop_capabilities() -> None:
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _pyseccomp():
    """The binding, imported before any restriction: finding libseccomp.so.2 runs ``ldconfig -p``."""
    try:
        import pyseccomp
    except ImportError as e:
        raise JailError(f"seccomp is unavailable: {e} (pip install pyseccomp)") from e
    except RuntimeError as e:  # pyseccomp raises this when it finds no libseccomp.so.2
        raise JailError(f"seccomp is unavailable: {e} (Debian/Ubuntu: apt-get install libseccomp2)") from e
    return pyseccomp


def _seccomp(sc, allow_threads: bool) -> None:
    kill, pid = sc.KILL_PROCESS, os.getpid()
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, kill)  # 32-bit or x32 calls would name other syscalls: end the process
    f.set_attr(sc.Attr.CTL_SSB, 1)  # do not force the speculative-store-bypass mitigation: it would slow the kernel down

    def rule(action: int, name: str, *args) -> None:
        nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if nr == -1:  # libseccomp does not know this name
            if name in _REQUIRED:
                raise JailError(f"libseccomp does not know the system call {name}: too old")
            return
        f.add_rule(action, nr, *args)

    for name in _KILLED:
        rule(kill, name)
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if allow_threads:
        rule(kill, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    else:
        rule(kill, "clone")
    for name in _SIGNALS_TO_SELF:
        rule(kill, name, sc.Arg(0, sc.NE, pid))
    for name in _ONLY_PID_0:
        rule(kill, name, sc.Arg(0, sc.NE, 0))
    for request in _IOCTL_KILLED:  # the kernel reads the request as 32 bits: compare only those
        rule(kill, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    for command in (_F_SETOWN, _F_SETOWN_EX):
        rule(kill, "fcntl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, command))
    f.load()


def enter(private_tmp: str | Path, *, allow_threads: bool = False, extra_read: Sequence[str | Path] = (),
          forbid: Sequence[str | Path] = ()) -> None:
    """Jail this process for the rest of its life; raise :class:`JailError` when that is impossible.

    ``private_tmp``: an existing directory, the only place the process may write (and read);
    it also becomes the working directory. Put NUMBA_CACHE_DIR and TMPDIR there, and the copy of
    the kernel file. ``allow_threads``: allow new threads (clone with CLONE_THREAD), for numba with
    more than one thread. ``extra_read``: more paths to allow reading. ``forbid``: paths that must
    stay unreadable (the repository, the data directory); :class:`JailError` if an allowed path
    contains one.
    """
    private_tmp = Path(private_tmp).resolve()
    if not sys.platform.startswith("linux"):
        raise JailError(f"the jail needs Linux (Landlock and seccomp), not {sys.platform}")
    if not private_tmp.is_dir():
        raise JailError(f"private tmp {private_tmp} is not a directory")
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError as e:
        raise JailError(f"the jail needs /proc: {e}") from e
    if threads != 1:
        raise JailError(f"enter the jail before any thread starts: {threads} threads run "
                        "(set OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1, NUMBA_NUM_THREADS=1)")
    abi = landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        raise JailError(f"Landlock ABI {abi} is below {MIN_LANDLOCK_ABI} (Linux >= 6.2 with landlock in CONFIG_LSM "
                        "or lsm= on the kernel command line)" if abi else "Landlock is not available in this kernel")
    sc = _pyseccomp()
    reads = readable_paths(extra_read)
    for path in (Path(p).resolve() for p in forbid):
        for allowed in [*reads, private_tmp]:
            if _within(path, allowed):
                raise JailError(f"{path} must stay unreadable but lies within the allowed {allowed}")
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.chdir(private_tmp)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        _landlock(private_tmp, reads, abi)
        _drop_capabilities()
    except OSError as e:
        raise JailError(f"could not apply the jail: {e}") from e
    try:
        _seccomp(sc, allow_threads)
    except OSError as e:
        raise JailError(f"could not load the seccomp filter: {e}") from e


def describe_death(signal_number: int) -> str:
    """Why a jailed worker died of this signal (a positive signal number, or a negative return code)."""
    sig = abs(signal_number)
    if sig == signal.SIGSYS:
        return ("the jail stopped a forbidden system call (a new process or thread, a socket, ptrace, a signal to "
                "another process, io_uring, bpf, mount, ...): the kernel tried to leave its sandbox")
    try:
        return f"killed by {signal.Signals(sig).name}"
    except ValueError:
        return f"killed by signal {sig}"
