//! What the runtime asks of the operating system about processes: a worker in a process group
//! of its own that dies with its controller, and ending that whole group.
//!
//! A step may start programs of its own. They join the worker's group, so a time limit, an
//! abort or a stop ends them with it, and none is left holding the log pipes open. If the
//! controller dies (even by `kill -9`), the worker learns it (a parent-death signal on Linux;
//! elsewhere a thread that watches the parent) and ends its group.

/// The variable through which a worker learns which process started it (see
/// [`die_with_parent`]).
pub(crate) const PARENT_ENV: &str = "PIPELINE_WORKER_PARENT";

/// Prepares a worker's command: a process group of its own, led by the worker, and the
/// controller's pid for the worker to watch. No code runs between fork and exec, so the
/// standard library can spawn with `posix_spawn` (a `fork` of a large controller costs most of
/// a millisecond).
pub(crate) fn own_group(command: &mut tokio::process::Command) {
    #[cfg(unix)]
    command.process_group(0);
    command.env(PARENT_ENV, std::process::id().to_string());
}

/// Ends process group `group` (a worker and what it started) with SIGKILL. A group that is
/// already gone is not an error.
pub(crate) fn kill_group(group: u32) {
    #[cfg(unix)]
    if let Ok(group) = libc::pid_t::try_from(group)
        && group > 1
    {
        // SAFETY: a plain system call; a group that is gone gives ESRCH, which is fine.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
}

/// In a worker process, before the step runs: lead a process group of its own (a worker the
/// local executor started already does; one a Ray job started joins it, so that what the step
/// starts can be told apart from the job's shell), and when the process that started it goes
/// away, end the worker and everything the step started.
pub(crate) fn die_with_parent() {
    // Read, then removed: programs the step starts are not workers. Only the local executor
    // names the controller.
    let controller: Option<u32> = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
    // SAFETY: called from the worker's constructor, before `main`, on the only thread yet.
    unsafe { std::env::remove_var(PARENT_ENV) };
    #[cfg(unix)]
    {
        // SAFETY: a plain system call.
        let parent_then = unsafe { libc::getppid() };
        // SAFETY: a plain system call. It fails for a session leader (a Ray job's entrypoint
        // that its shell replaced), which leads its group already.
        unsafe {
            libc::setpgid(0, 0);
        }
        // On Linux, started by the local executor: a SIGTERM when the thread that started this
        // worker (a thread of the executor's runtime, which lives as long as the run) goes away.
        // Not under a Ray job, whose threads are not ours to know.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let signalled = controller.is_some()
            // SAFETY: a plain system call.
            && unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } == 0;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let signalled = false;
        // The parent died before the signal was asked for: it will not come.
        let parent = controller.map_or(i64::from(parent_then), i64::from);
        // SAFETY: a plain system call.
        if i64::from(unsafe { libc::getppid() }) != parent {
            let _ = std::io::Write::flush(&mut std::io::stderr());
            std::process::exit(128 + libc::SIGTERM);
        }
        // SAFETY: a plain system call.
        let leader = unsafe { libc::getpgrp() == libc::getpid() };
        extern "C" fn on_term(_: libc::c_int) {
            // SAFETY: kill and _exit are async-signal-safe.
            unsafe {
                if libc::getpgrp() == libc::getpid() {
                    libc::kill(0, libc::SIGKILL);
                }
                libc::_exit(128 + libc::SIGTERM);
            }
        }
        if leader {
            // SAFETY: the handler makes only async-signal-safe calls.
            unsafe {
                libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
            }
        }
        if signalled {
            return;
        }
        // No parent-death signal (another system, or a Ray job): watch the parent.
        let watch = move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
                // SAFETY: plain system calls.
                unsafe {
                    if i64::from(libc::getppid()) != parent {
                        if leader {
                            libc::kill(0, libc::SIGKILL);
                        }
                        libc::_exit(128 + libc::SIGTERM);
                    }
                }
            }
        };
        let _ = std::thread::Builder::new()
            .name("pipeline-parent-watch".into())
            .spawn(watch);
    }
}

/// In a worker that leads its process group, as it ends: ends the programs the step started
/// that are still running (they joined the group), so that nothing outlives its step where no
/// executor ends the group afterwards (a Ray job that ends by itself leaves them running).
/// Linux only (it reads the group's members from /proc); elsewhere the local executor's
/// [`kill_group`] does it.
pub(crate) fn end_rest_of_group() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls.
        let me = unsafe { libc::getpid() };
        if unsafe { libc::getpgrp() } != me {
            return;
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok()) {
            if pid == me {
                continue;
            }
            let group = stat_field(pid.unsigned_abs(), 2).and_then(|g| g.parse::<libc::pid_t>().ok());
            if group == Some(me) {
                // SAFETY: a plain system call; a process gone meanwhile gives ESRCH.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// This machine's name, as runs record where their controller lives.
pub(crate) fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        #[cfg(unix)]
        {
            let mut buf = [0u8; 256];
            // SAFETY: the buffer is valid for its length; the name is NUL-terminated within it.
            if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                return String::from_utf8_lossy(&buf[..end]).into_owned();
            }
        }
        String::new()
    })
}

/// Whether process `pid` exists on this host (a zombie counts as gone).
pub(crate) fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        stat_field(pid, 0).is_some_and(|state| state != "Z" && state != "X")
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 checks existence and permission only.
        unsafe { libc::kill(pid, 0) == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
    }
}

/// Field `n` of `/proc/<pid>/stat` counted from the one after the command name (0: the state,
/// 1: the parent, 2: the process group); `None` when the process is gone. The name is in
/// parentheses and may hold spaces, so fields are counted from its closing one.
#[cfg(target_os = "linux")]
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// A new secret: 128 random bits as hex, from the system's random source.
#[cfg(any(feature = "ray", feature = "ui"))]
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // No random device: a hash of what differs between starts is still unguessable enough
        // for a loopback page, and better than refusing to start.
        let seed = format!("{:?}{}{:p}", std::time::SystemTime::now(), std::process::id(), &bytes);
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two secrets are equal, in a time that does not depend on where they differ.
#[cfg(any(feature = "ray", feature = "ui"))]
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
