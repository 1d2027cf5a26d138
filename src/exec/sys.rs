//! Every raw system call of the sandbox, each a thin typed wrapper returning `io::Result`.
//!
//! Owns the `unsafe` of `exec`, except two calls whose contract only the caller can keep:
//! [`fork`] (the helper is single-threaded) and std's `pre_exec` (the closure is
//! [`prepare_helper_child`], async-signal-safe). Knows nothing of specs or sandboxes: callers
//! (`init`, `mounts`, `caps`, `embedded`) decide what to call and in which order.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

pub use libc::{
    CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, MS_BIND,
    MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_STRICTATIME, SIGCHLD, SIGHUP, SIGINT,
    SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// What the freshly forked helper does before `exec`, prepared in the parent so that the child
/// allocates nothing.
pub struct HelperSeal {
    /// The helper binary, bound read-only over itself in the child's new mount namespace.
    pub binary: CString,
    /// Not root: the user namespace to unshare and how it gets its maps.
    pub userns: Option<UserNs>,
    /// Whether the helper gets a private mount namespace (and with it the read-only seal);
    /// false only for chroot isolation where this process may not create one.
    pub mount_ns: bool,
}

/// How a rootless helper's user namespace is mapped.
pub enum UserNs {
    /// Only the caller, as root: the child writes its own maps (`setgroups` denied).
    Single { uid_map: CString, gid_map: CString },
    /// The full subordinate range, written by the parent with `newuidmap`/`newgidmap`: the
    /// child writes its pid and a newline to `ready`, then waits for one byte on `go`.
    Helpers { ready: RawFd, go: RawFd },
}

impl UserNs {
    /// The caller alone, mapped to root.
    pub fn single() -> UserNs {
        let map = |id: u32| CString::new(format!("0 {id} 1\n")).expect("a formatted number has no NUL");
        UserNs::Single { uid_map: map(getuid()), gid_map: map(getgid()) }
    }
}

impl HelperSeal {
    pub fn new(binary: &Path, userns: Option<UserNs>, mount_ns: bool) -> io::Result<HelperSeal> {
        Ok(HelperSeal { binary: cstring(binary)?, userns, mount_ns })
    }
}

/// In a freshly forked child of a (possibly multi-threaded) parent, before `exec`: keep
/// `report_fd` open across exec, enter the user namespace (rootless) and a private mount
/// namespace in which the helper binary is bound read-only over itself, and die with the
/// thread that spawned us. The `exec` that follows then runs the binary from that read-only
/// mount, so no process of the sandbox can reach a writable slipway binary through
/// `/proc/<pid>/exe` (CVE-2019-5736). Only async-signal-safe system calls, no allocation.
pub fn prepare_helper_child(report_fd: RawFd, seal: &HelperSeal) -> io::Result<()> {
    set_cloexec(report_fd, false)?;
    enter_sealed_namespaces(seal)
}

/// In a freshly forked child, before `exec`: the rootless re-execution of slipway itself
/// (`userns`). Signals as a new process expects them (the parent blocks the ones it forwards),
/// then the namespaces of [`prepare_helper_child`]. Async-signal-safe, no allocation.
pub fn prepare_userns_child(seal: &HelperSeal) -> io::Result<()> {
    reset_signals()?;
    enter_sealed_namespaces(seal)
}

fn enter_sealed_namespaces(seal: &HelperSeal) -> io::Result<()> {
    match &seal.userns {
        None => {}
        Some(UserNs::Single { uid_map, gid_map }) => {
            unshare(CLONE_NEWUSER)?;
            write_proc_file(c"/proc/self/setgroups", c"deny")?;
            write_proc_file(c"/proc/self/uid_map", uid_map)?;
            write_proc_file(c"/proc/self/gid_map", gid_map)?;
        }
        Some(UserNs::Helpers { ready, go }) => {
            unshare(CLONE_NEWUSER)?;
            let mut digits = [0u8; 24];
            let line = decimal_line(getpid() as u64, &mut digits);
            write_all(*ready, line)?;
            let mut byte = [0u8; 1];
            // SAFETY: `byte` is a valid one-byte buffer; `go` is open until exec.
            if unsafe { libc::read(*go, byte.as_mut_ptr().cast(), 1) } != 1 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
    }
    if !seal.mount_ns {
        return set_pdeathsig(SIGKILL);
    }
    unshare(CLONE_NEWNS)?;
    let root = c"/";
    let bin = seal.binary.as_ptr();
    // SAFETY: every pointer is null or a NUL-terminated string alive for the calls.
    unsafe {
        cvt(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), MS_REC | MS_PRIVATE, std::ptr::null()))?;
        cvt(libc::mount(bin, bin, std::ptr::null(), MS_BIND, std::ptr::null()))?;
        let flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;
        cvt(libc::mount(std::ptr::null(), bin, std::ptr::null(), flags, std::ptr::null()))?;
    }
    // Entering the user namespace changed our credentials, which clears the parent-death
    // signal: arm it last.
    set_pdeathsig(SIGKILL)
}

/// `n` in decimal followed by a newline, in `buf` (no allocation).
fn decimal_line(mut n: u64, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len() - 1;
    buf[i] = b'\n';
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

fn write_proc_file(path: &CStr, content: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let bytes = content.to_bytes();
    // SAFETY: `bytes` is valid for its length; `fd` is ours.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let result = if written == bytes.len() as isize { Ok(()) } else { Err(io::Error::last_os_error()) };
    // SAFETY: `fd` was opened above and is not used again.
    unsafe { libc::close(fd) };
    result
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD take an int and touch only the descriptor table.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let flags = if on { flags | libc::FD_CLOEXEC } else { flags & !libc::FD_CLOEXEC };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) })?;
    Ok(())
}

pub fn set_pdeathsig(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is passed.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

pub fn set_dumpable(on: bool) -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes 0 or 1; no memory is passed.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) })?;
    Ok(())
}

pub fn set_no_new_privs() -> io::Result<()> {
    rustix::thread::set_no_new_privs(true).map_err(io::Error::from)
}

/// Drops capability `cap` from the bounding set; `Ok(false)` when the kernel does not know it.
pub fn drop_bounding_cap(cap: u32) -> io::Result<bool> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is passed.
    match cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The calling thread's effective capability set (a bit mask of capability numbers).
pub fn effective_caps() -> io::Result<u64> {
    let sets = rustix::thread::capabilities(None).map_err(io::Error::from)?;
    Ok(sets.effective.bits())
}

/// Whether the permitted set survives the switch of every uid away from 0 (`PR_SET_KEEPCAPS`;
/// the effective set is cleared regardless, and the flag itself by the next execve).
pub fn set_keep_caps(on: bool) -> io::Result<()> {
    rustix::thread::set_keep_capabilities(on).map_err(io::Error::from)
}

/// Raises capability `cap` in the ambient set (it must be permitted and inheritable).
pub fn raise_ambient_cap(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number; no memory is passed.
    cvt(unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap as libc::c_ulong, 0, 0)
    })?;
    Ok(())
}

pub fn clear_ambient_caps() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    cvt(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Sets the calling thread's capability sets (bit masks of capability numbers).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let word = |mask: u64, i: u32| (mask >> (32 * i)) as u32;
    let data: [Data; 2] = [0, 1].map(|i| Data {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    // SAFETY: capset(2) v3 reads one header and two data structs, laid out as above and alive
    // for the duration of the call.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) as libc::c_int })?;
    Ok(())
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare(2) takes flags only; the helper calling it is single-threaded.
    cvt(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// Whether this process may make a private mount namespace and mount in it (the probe of
/// chroot isolation): a short-lived thread unshares one (only that thread moves) and makes `/`
/// private in it.
pub fn can_create_mount_namespace() -> bool {
    let probe = std::thread::Builder::new().name("mountns-probe".to_string()).spawn(|| {
        // SAFETY: unshare(2) of the mount namespace (and with it the filesystem context) moves
        // only this thread, which ends right after; mount(2) takes static strings.
        unsafe {
            libc::unshare(CLONE_NEWNS) == 0
                && libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), MS_REC | MS_PRIVATE, std::ptr::null())
                    == 0
        }
    });
    probe.ok().and_then(|t| t.join().ok()).unwrap_or(false)
}

/// chroot(2): the calling process' root becomes `path` (its working directory is left alone).
pub fn chroot(path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: `path` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::chroot(path.as_ptr()) })?;
    Ok(())
}

/// Makes the calling process a child subreaper: orphaned descendants are reparented to it
/// instead of the system's init, so it can reap and kill them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer; no memory is passed.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// In a freshly forked child before exec: a private mount namespace without the cgroup v2
/// mount of a hybrid host (`/sys/fs/cgroup/unified`). Async-signal-safe, no allocation.
pub fn hide_unified_cgroup() -> io::Result<()> {
    unshare(CLONE_NEWNS)?;
    let root = c"/";
    let unified = c"/sys/fs/cgroup/unified";
    // SAFETY: every pointer is null or a static NUL-terminated string.
    unsafe {
        cvt(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), MS_REC | MS_PRIVATE, std::ptr::null()))?;
        cvt(libc::umount2(unified.as_ptr(), libc::MNT_DETACH))?;
    }
    Ok(())
}

/// Moves the calling thread into the namespace `fd` refers to.
pub fn setns(fd: &impl AsRawFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns(2) takes a descriptor and flags; the helper calling it is single-threaded.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) })?;
    Ok(())
}

/// Forks; `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
///
/// # Safety
/// The caller must be single-threaded (the sandbox helper is), so that the child does not
/// inherit locks held by other threads.
pub unsafe fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the caller guarantees a single-threaded process (see above).
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 { None } else { Some(pid) })
}

/// How a child ended, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// Reaps one child (`pid` or any with -1); `Ok(None)` with `nohang` when none has ended.
pub fn waitpid(pid: libc::pid_t, nohang: bool) -> io::Result<Option<(libc::pid_t, WaitStatus)>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, if nohang { libc::WNOHANG } else { 0 }) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if ret == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some((ret, WaitStatus::Exited(libc::WEXITSTATUS(status)))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some((ret, WaitStatus::Signaled(libc::WTERMSIG(status)))));
        }
    }
}

/// Blocks until child `pid` has exited, without reaping it (so its pid stays ours to signal).
pub fn wait_exited_keep(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid out-buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; P_PID with a child pid.
        let ret = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

pub fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes integers only.
    cvt(unsafe { libc::kill(pid, signal) })?;
    Ok(())
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `signals` for the (single) thread so they queue for [`sigwait`].
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; the old mask is not requested.
    let ret = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    cvt(ret)?;
    Ok(())
}

/// Unblocks every signal and resets every disposition to its default, as a process expects
/// to find them after exec.
pub fn reset_signals() -> io::Result<()> {
    for signal in 1..libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code; glibc-reserved signals fail
        // with EINVAL, which is ignored.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    let empty = sigset(&[]);
    // SAFETY: `empty` is an initialised (empty) set; the old mask is not requested.
    cvt(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) })?;
    Ok(())
}

/// Waits for one of `signals` (which must be blocked); returns its number and sender pid.
pub fn sigwait(signals: &[libc::c_int]) -> io::Result<(libc::c_int, libc::pid_t)> {
    let set = sigset(signals);
    loop {
        // SAFETY: an all-zero siginfo_t is a valid out-buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is initialised, `info` a valid out-pointer.
        let ret = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: for signals sent with kill(2) and SIGCHLD the kernel fills si_pid.
        let pid = unsafe { info.si_pid() };
        return Ok((ret, pid));
    }
}

pub fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: `groups` points at `groups.len()` gid_t values (u32 on Linux).
    cvt(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) as libc::c_int })?;
    Ok(())
}

/// setresgid(2) as a raw syscall: this thread only (the process is single-threaded).
pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: integers only.
    cvt(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) as libc::c_int })?;
    Ok(())
}

/// setresuid(2) as a raw syscall: this thread only (the process is single-threaded).
pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: integers only.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) as libc::c_int })?;
    Ok(())
}

pub fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: a plain syscall on a stack value; the resource number comes from the known table.
    if unsafe { libc::setrlimit(resource as _, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn sethostname(name: &str) -> io::Result<()> {
    rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
}

/// mount(2). `source`, `fstype` and `data` may be absent.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstring).transpose()?;
    let target = cstring(target)?;
    let fstype = fstype.map(CString::new).transpose().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let data = data.map(CString::new).transpose().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string alive for the call.
    cvt(unsafe { libc::mount(ptr(&source), target.as_ptr(), ptr(&fstype), flags, ptr(&data) as *const libc::c_void) })?;
    Ok(())
}

/// Opens the absolute host `path` as an `O_PATH` descriptor without following any symlink on
/// the way (`RESOLVE_NO_SYMLINKS`): a mount source checked earlier that became a link since
/// fails here instead of being followed (D5, CVE-2024-23651).
pub fn open_host_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    // Without O_NOFOLLOW: a link as the last component is refused too (with it, O_PATH would
    // open the link itself).
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    rustix::fs::openat2(rustix::fs::CWD, path, flags, Mode::empty(), resolve).map_err(|e| {
        let e = io::Error::from(e);
        match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(e.kind(), format!("{} has a symbolic link on its way", path.display())),
            _ => e,
        }
    })
}

pub fn umount_detach(target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: `target` is NUL-terminated and alive for the call.
    cvt(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    rustix::process::pivot_root(new_root, put_old).map_err(io::Error::from)
}

/// Makes the device node `path` (a character device, or a block device with `block`), with
/// exactly `mode` (the umask does not apply).
pub fn mknod(path: &Path, block: bool, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    let kind = if block { rustix::fs::FileType::BlockDevice } else { rustix::fs::FileType::CharacterDevice };
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(rustix::fs::CWD, path, kind, Mode::from_raw_mode(mode), dev)?;
    rustix::fs::chmod(path, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// The number of the first free loop device (`LOOP_CTL_GET_FREE` on `/dev/loop-control`; the
/// kernel creates the device when every existing one is bound).
pub fn free_loop_device() -> io::Result<u32> {
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    let control = std::fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let id = cvt(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _, 0) })?;
    Ok(id as u32)
}

/// The `/proc/self/fd/N` path of `fd`, through which mount(2) reaches exactly that inode.
pub fn fd_path(fd: &impl AsRawFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `path` beneath `root` as an `O_PATH` descriptor, resolving `..` and symlinks as if
/// `root` were `/` (never escaping it); with `no_symlinks` any symlink on the way is refused.
pub fn open_beneath(root: &impl AsFd, path: &str, no_symlinks: bool) -> io::Result<OwnedFd> {
    let mut resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if no_symlinks {
        resolve |= ResolveFlags::NO_SYMLINKS;
        flags |= OFlags::NOFOLLOW;
    }
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve).map_err(io::Error::from)
}

/// Opens `path` beneath `root` for reading (non-blocking, no controlling tty), resolving it
/// as [`open_beneath`] does.
pub fn open_read_beneath(root: &impl AsFd, path: &str) -> io::Result<OwnedFd> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve).map_err(io::Error::from)
}

/// A new network namespace with its loopback up, made by a short-lived thread (namespaces
/// are per thread, so the calling process, threads and all, stays where it is).
pub fn new_network_namespace() -> io::Result<std::fs::File> {
    std::thread::Builder::new()
        .name("netns".to_string())
        .spawn(|| {
            // SAFETY: unshare(2) of the network namespace alone moves only this thread, which
            // ends right after.
            cvt(unsafe { libc::unshare(CLONE_NEWNET) })?;
            loopback_up()?;
            std::fs::File::open("/proc/thread-self/ns/net")
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Closes every descriptor from 3 up except those in `keep`.
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|&&fd| fd > 2).map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > first {
            // SAFETY: close_range only closes descriptors; none of them is used afterwards by
            // this process except those in `keep`, which are outside the closed ranges.
            cvt(unsafe { libc::close_range(first, fd - 1, 0) })?;
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// Marks every descriptor from 3 up close-on-exec.
pub fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    cvt(unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) })?;
    Ok(())
}

pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; `new` is a stdio slot we own.
    cvt(unsafe { libc::dup2(old, new) })?;
    Ok(())
}

/// A pipe whose ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// Whether the write end of the pipe `read_end` belongs to has been closed everywhere.
pub fn pipe_hung_up(read_end: &impl AsRawFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: read_end.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; zero timeout.
    cvt(unsafe { libc::poll(&mut pfd, 1, 0) })?;
    Ok(pfd.revents & libc::POLLHUP != 0)
}

/// Whether every read end of the pipe `write_end` belongs to has been closed.
pub fn pipe_reader_gone(write_end: RawFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: write_end, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd; zero timeout.
    cvt(unsafe { libc::poll(&mut pfd, 1, 0) })?;
    Ok(pfd.revents & libc::POLLERR != 0)
}

/// Brings up the loopback interface of the current network namespace.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is owned right away.
    let sock = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `sock` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: an all-zero ifreq is valid; the name is copied in below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// Whether `path` is executable by the current (effective) user.
pub fn executable(path: &CStr) -> bool {
    // SAFETY: `path` is NUL-terminated.
    unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// execve(2); returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated arrays of NUL-terminated strings that outlive
    // the call (it does not return on success).
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Exits immediately without running destructors or flushing stdio buffers (what a forked
/// child must do).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) never returns and touches no process state we care about.
    unsafe { libc::_exit(code) }
}

pub fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

pub fn getgid() -> u32 {
    rustix::process::getgid().as_raw()
}

pub fn getpid() -> libc::pid_t {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// Fills `buf` from a borrowed descriptor, unbuffered (end of file first is an error).
pub fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid writable buffer of the given length for the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            n => buf = &mut buf[n as usize..],
        }
    }
    Ok(())
}

/// Writes all of `bytes` to a borrowed descriptor.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid buffer of the given length for the call.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// The per-mount flags (`MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`, atime flags) of the
/// mount `path` is on, as a bind remount must repeat them (in a user namespace they are locked).
pub fn mount_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let path = cstring(path)?;
    // SAFETY: an all-zero statvfs is a valid out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `st` a valid out-pointer.
    cvt(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    let kept = libc::ST_RDONLY
        | libc::ST_NOSUID
        | libc::ST_NODEV
        | libc::ST_NOEXEC
        | libc::ST_NOATIME
        | libc::ST_NODIRATIME
        | libc::ST_RELATIME;
    // The ST_* bits have the values of the matching MS_* flags.
    Ok(st.f_flag & kept)
}
