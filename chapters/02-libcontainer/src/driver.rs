//! The execution driver: how a container actually starts. In 2014 Docker replaced the
//! LXC tools with libcontainer, code inside the daemon that makes the system calls
//! itself; this driver is that libcontainer, kept small.
//!
//! For each container it unpacks the image into `ROOT/containers/<id>/rootfs` and, from
//! one spawner thread, `clone`s a child in new mount, UTS, IPC, PID and network
//! namespaces. The child, PID 1 of its namespace, waits until the daemon has put it into
//! its cgroups, then builds its world (private mounts, the rootfs bound onto itself,
//! `/proc`, a tmpfs `/dev` with `null`, `zero` and `urandom`, `pivot_root`, the
//! hostname) and `execve`s the command with the image's environment and working
//! directory, stdout and stderr going to `ROOT/containers/<id>/log`.
//!
//! What chapter 01 got from a tool's command line, files and exit codes, the daemon now
//! has first hand: the container's first process is its own child, its exit status is
//! the command's, and a failed step comes back as that step's name and errno.
//!
//! Read next: [`crate::daemon`], which records what this driver reports.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_oci::layout::{Image, Layout};
use berth_oci::unpack::{open_in_root, unpack_image, UnpackError};
use nix::errno::Errno;
use nix::libc::{self, c_char};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// The search path when the image sets none: Docker's default.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Every container's limits. A real engine takes them from `run --memory`/`--pids-limit`;
/// this chapter fixes them, to show where they are written.
const MEMORY_LIMIT_BYTES: u64 = 256 << 20;
const PIDS_LIMIT: u32 = 1024;
/// Every container's cgroup is `<hierarchy>/berth-chapter02/<id>`.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP_PARENT: &str = "berth-chapter02";
/// The child's stack until `execve`: it only runs [`setup`], which needs little.
const STACK_SIZE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("unpacking the image into {rootfs:?}: {source}")]
    Unpack {
        rootfs: PathBuf,
        // Boxed, as the other large sources: errors travel up by value.
        source: Box<UnpackError>,
    },
    #[error("command {command:?} not found in the image (searched {searched}); pass a program the image has, such as /bin/sh")]
    CommandNotFound { command: String, searched: String },
    #[error("no command given and the image has no default (Cmd/Entrypoint); pass one after the image name")]
    NoCommand,
    #[error(
        "image setting or argument {value:?} contains a NUL byte, which a C string cannot hold"
    )]
    Unrepresentable { value: String },
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the driver's spawner thread is gone; restart the daemon")]
    SpawnerGone,
    #[error("cloning the container's process: {0}")]
    Clone(Errno),
    #[error("setting up the container failed while {step}: {source}")]
    Setup {
        step: &'static str,
        source: io::Error,
    },
    #[error("the container's process ended before it was set up; see its log")]
    ChildVanished,
    #[error("sending {signal} to container {id} (pid {pid}): {source}")]
    Kill {
        id: String,
        signal: Signal,
        pid: Pid,
        source: Errno,
    },
}

/// What the driver needs to start one container.
#[derive(Debug)]
pub struct Launch<'a> {
    pub id: &'a str,
    /// `ROOT/containers/<id>`: the rootfs and the log go here.
    pub dir: &'a Path,
    pub layout: &'a Layout,
    pub image: &'a Image,
    /// The command the user gave; empty means the image's Entrypoint + Cmd.
    pub cmd: &'a [String],
}

/// The first process of every running container, by container id. Shared by the
/// driver (which signals it) and each [`Child`] (which reaps it); see [`Child::wait`].
type Running = Arc<Mutex<HashMap<String, Pid>>>;

/// A job for the spawner thread.
type SpawnJob = Box<dyn FnOnce() + Send>;

pub struct Driver {
    spawner: Mutex<mpsc::Sender<SpawnJob>>,
    running: Running,
}

/// A started container's first process, which the daemon waits for.
#[derive(Debug)]
pub struct Child {
    id: String,
    pid: Pid,
    running: Running,
}

impl Default for Driver {
    fn default() -> Driver {
        Driver::new()
    }
}

impl Driver {
    pub fn new() -> Driver {
        Driver {
            spawner: Mutex::new(start_spawner()),
            running: Running::default(),
        }
    }

    // ANCHOR: start
    /// Prepares the container's files and starts its first process. Returns once the
    /// command is running (its `execve` succeeded), or with the step that failed.
    pub fn start(&self, launch: &Launch) -> Result<Child, DriverError> {
        let rootfs = launch.dir.join("rootfs");
        io_at("creating", &rootfs, fs::create_dir_all(&rootfs))?;
        unpack_image(launch.layout, launch.image, &rootfs).map_err(|source| {
            DriverError::Unpack {
                rootfs: rootfs.clone(),
                source: Box::new(source),
            }
        })?;

        let settings = ImageSettings::of(launch.image);
        let cmd = if launch.cmd.is_empty() {
            settings.default_cmd.clone()
        } else {
            launch.cmd.to_vec()
        };
        let program = cmd.first().ok_or(DriverError::NoCommand)?;
        // Resolved here, along the image's PATH, so that a missing program is a clear
        // error now, and the child can `execve` a path without searching.
        let program = find_command(&rootfs, program, &settings.path())?;
        // The mount points the child needs; a minimal image may lack them.
        for dir in ["proc", "dev"] {
            let dir = rootfs.join(dir);
            io_at("creating", &dir, fs::create_dir_all(&dir))?;
        }

        let log_path = launch.dir.join("log");
        let log = io_at("creating", &log_path, File::create(&log_path))?;
        let null_path = Path::new("/dev/null");
        let null = io_at("opening", null_path, File::open(null_path))?;
        let plan = Plan::new(launch.id, &rootfs, &program, &cmd, &settings, log, null)?;
        let pid = self.spawn(launch.id, plan)?;
        lock(&self.running).insert(launch.id.to_string(), pid);
        Ok(Child {
            id: launch.id.to_string(),
            pid,
            running: self.running.clone(),
        })
    }
    // ANCHOR_END: start

    // ANCHOR: spawn
    /// Clones the container's process from the spawner thread and walks it through the
    /// handshake (see [`launch`]).
    ///
    /// The child sets `PR_SET_PDEATHSIG` to SIGKILL right after the clone, and that is
    /// what ties the container to the daemon: when the daemon dies the kernel kills the
    /// container's PID 1, and with it everything in its PID namespace. The signal fires
    /// when the *thread* that cloned the child exits, not the process; a request thread
    /// would kill its container when the request ends. So one thread that lives as long
    /// as the daemon does every clone.
    fn spawn(&self, id: &str, plan: Plan) -> Result<Pid, DriverError> {
        let (reply, answer) = mpsc::channel();
        let id = id.to_string();
        let job: SpawnJob = Box::new(move || {
            let _ = reply.send(launch(&id, plan));
        });
        let spawner = self.spawner.lock().unwrap_or_else(|e| e.into_inner());
        spawner.send(job).map_err(|_| DriverError::SpawnerGone)?;
        drop(spawner);
        answer.recv().map_err(|_| DriverError::SpawnerGone)?
    }
    // ANCHOR_END: spawn

    // ANCHOR: stop
    /// Stops container `id`: SIGTERM, then SIGKILL after `timeout_secs`. A container
    /// that is already gone is not an error.
    ///
    /// Inside its PID namespace the command is init, and the kernel gives init only the
    /// signals it has a handler for: a command without a SIGTERM handler (`sleep`, a
    /// shell) ignores it, as under `docker stop`, and waits out the timeout. SIGKILL
    /// from outside the namespace cannot be ignored, and takes the whole namespace.
    pub fn stop(&self, id: &str, timeout_secs: u32) -> Result<(), DriverError> {
        if !self.signal(id, Signal::SIGTERM)? {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(timeout_secs.into());
        while Instant::now() < deadline {
            if !lock(&self.running).contains_key(id) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(id, Signal::SIGKILL)?;
        Ok(())
    }
    // ANCHOR_END: stop

    /// Sends `signal` to container `id`'s first process; false if there is none.
    fn signal(&self, id: &str, signal: Signal) -> Result<bool, DriverError> {
        // While the lock is held the process cannot be reaped (see `Child::wait`), so
        // the pid is still the container's and not some later process's.
        let running = lock(&self.running);
        let Some(&pid) = running.get(id) else {
            return Ok(false);
        };
        match kill(pid, signal) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(source) => Err(DriverError::Kill {
                id: id.into(),
                signal,
                pid,
                source,
            }),
        }
    }
}

impl Child {
    /// Waits for the container's first process to exit, and reaps it.
    ///
    /// First it waits *without* reaping (`WNOWAIT`): a zombie keeps its pid, so
    /// [`Driver::stop`] cannot signal a stranger that reused it. Then, under the lock
    /// `stop` signals under, it forgets the pid, and only then reaps. Once PID 1 is
    /// reaped the kernel has ended the whole PID namespace, so the cgroups are empty and
    /// go too (and again, for good measure, on `rm`).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            match waitid(
                Id::Pid(self.pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => break,
            }
        }
        let mut running = lock(&self.running);
        running.remove(&self.id);
        let status = reap(self.pid);
        drop(running);
        remove_cgroups(&self.id);
        status
    }
}

/// Reaps `pid` and returns its raw wait status as an [`ExitStatus`].
fn reap(pid: Pid) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for the kernel to write the status to.
        let ret = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if ret == pid.as_raw() {
            return Ok(ExitStatus::from_raw(status));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is one insert or remove: a panic leaves no half.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs every clone of the daemon; see [`Driver::spawn`] for why one thread.
fn start_spawner() -> mpsc::Sender<SpawnJob> {
    let (jobs, queue) = mpsc::channel::<SpawnJob>();
    std::thread::Builder::new()
        .name("clone-spawner".into())
        .spawn(move || {
            for job in queue {
                job();
            }
        })
        .expect("the daemon can start a thread");
    jobs
}

// ANCHOR: exit_code
/// Turns the container's wait status into its exit code, with a note when a signal
/// ended it. No tool stands in between any more: the status is the command's own.
pub fn exit_code(status: ExitStatus) -> (Option<i32>, Option<String>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), None),
        (None, Some(signal)) => (
            Some(128 + signal),
            Some(format!("the container was killed by signal {signal}")),
        ),
        (None, None) => (None, Some("the container ended in an unknown way".into())),
    }
}
// ANCHOR_END: exit_code

// ANCHOR: handshake
/// The parent/child handshake, over one socket pair, in this order:
/// 1. child → parent [`READY`]: the child has set its death signal.
/// 2. parent → child [`GO`]: the child is in its cgroups; set up and exec.
/// 3. child → parent: nothing, just end of file, when `execve` succeeded (the socket is
///    close-on-exec); or a failure report, [`Step`] and errno in 5 bytes, then exit.
///
/// Step 1 is what makes the death signal safe: if the daemon died between the clone
/// and the `prctl`, no signal would ever come, but then no GO comes either, and the
/// child, reading end of file, exits.
const READY: u8 = b'R';
const GO: u8 = b'G';

/// The child's setup steps, named for the error the daemon reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Stdio,
    PrivateMounts,
    BindRootfs,
    MountProc,
    MountDev,
    DeviceNode,
    PivotRoot,
    DetachOldRoot,
    Hostname,
    WorkingDir,
    Exec,
}

impl Step {
    const ALL: [Step; 11] = [
        Step::Stdio,
        Step::PrivateMounts,
        Step::BindRootfs,
        Step::MountProc,
        Step::MountDev,
        Step::DeviceNode,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::Hostname,
        Step::WorkingDir,
        Step::Exec,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Stdio => "redirecting stdin, stdout and stderr",
            Step::PrivateMounts => "making every mount private",
            Step::BindRootfs => "binding the rootfs onto itself",
            Step::MountProc => "mounting /proc",
            Step::MountDev => "mounting a tmpfs on /dev",
            Step::DeviceNode => "creating a device node in /dev",
            Step::PivotRoot => "pivoting into the rootfs",
            Step::DetachOldRoot => "detaching the old root",
            Step::Hostname => "setting the hostname",
            Step::WorkingDir => "changing to the working directory",
            Step::Exec => "executing the command",
        }
    }

    fn from_byte(byte: u8) -> Option<Step> {
        Step::ALL.get(byte as usize).copied()
    }
}
// ANCHOR_END: handshake

/// Everything the child needs, made before the clone. After it the child is a copy of
/// a multi-threaded process with only one thread: had another thread held the
/// allocator's lock at that moment, the copy would wait for it forever. So the child
/// never allocates; every path and argument is a C string made here, and the child
/// only makes system calls (the same rule as between `fork` and `exec`).
struct Plan {
    rootfs: CString,
    proc_dir: CString,
    dev_dir: CString,
    /// `rootfs/dev/null`, `zero`, `urandom`, with their device numbers.
    devices: Vec<(CString, libc::dev_t)>,
    hostname: CString,
    cwd: CString,
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    log: File,
    null: File,
}

impl Plan {
    fn new(
        id: &str,
        rootfs: &Path,
        program: &str,
        cmd: &[String],
        settings: &ImageSettings,
        log: File,
        null: File,
    ) -> Result<Plan, DriverError> {
        let path = |p: &Path| c_string(p.as_os_str().as_bytes());
        let devices = [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9)]
            .into_iter()
            .map(|(name, major, minor)| {
                Ok((
                    path(&rootfs.join("dev").join(name))?,
                    libc::makedev(major, minor),
                ))
            })
            .collect::<Result<_, DriverError>>()?;
        let mut env = settings.env.clone();
        // As Docker does: a command always has a PATH.
        if !env.iter().any(|var| var.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        Ok(Plan {
            rootfs: path(rootfs)?,
            proc_dir: path(&rootfs.join("proc"))?,
            dev_dir: path(&rootfs.join("dev"))?,
            devices,
            hostname: c_string(&id.as_bytes()[..12.min(id.len())])?,
            cwd: c_string(settings.working_dir.as_deref().unwrap_or("/").as_bytes())?,
            program: c_string(program.as_bytes())?,
            argv: cmd
                .iter()
                .map(|a| c_string(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|v| c_string(v.as_bytes()))
                .collect::<Result<_, _>>()?,
            log,
            null,
        })
    }
}

fn c_string(bytes: &[u8]) -> Result<CString, DriverError> {
    CString::new(bytes).map_err(|_| DriverError::Unrepresentable {
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// A null-terminated array of pointers into `strings`, as `execve` wants.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

// ANCHOR: clone
/// Runs on the spawner thread: clones the child, then the parent's half of the
/// handshake. On any failure the child is killed and reaped, and its cgroups removed.
///
/// Why `clone` and not `std::process::Command` with `unshare` in `pre_exec`: a new PID
/// namespace applies only to the *children* of the process that unshares it, so the
/// command would not be its PID 1, and `/proc` could not be mounted for it before the
/// exec. `clone` with `CLONE_NEWPID` makes the child PID 1 at once, in one call.
fn launch(id: &str, plan: Plan) -> Result<Pid, DriverError> {
    let socket_path = Path::new("socketpair");
    let (mut parent, child) = io_at("creating", socket_path, UnixStream::pair())?;
    let argv = pointers(&plan.argv);
    let envp = pointers(&plan.env);
    let mut stack = vec![0u8; STACK_SIZE];
    let (child_fd, parent_fd) = (child.as_raw_fd(), parent.as_raw_fd());
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET;
    // SAFETY: without CLONE_VM the child runs on its own copy of memory, on a copy of
    // `stack`; it only reads the plan made above and makes system calls, and it never
    // returns from `child_main` (it execs or exits).
    let pid = unsafe {
        nix::sched::clone(
            Box::new(|| child_main(&plan, &argv, &envp, child_fd, parent_fd)),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(DriverError::Clone)?;
    // Only the child may hold its end: its end of file is the news of the exec.
    drop(child);
    handshake(&mut parent, id, pid).inspect_err(|_| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = reap(pid);
        remove_cgroups(id);
    })?;
    Ok(pid)
}
// ANCHOR_END: clone

/// The parent's half of the handshake (see [`READY`]).
fn handshake(parent: &mut UnixStream, id: &str, pid: Pid) -> Result<(), DriverError> {
    let mut byte = [0u8];
    if parent.read_exact(&mut byte).is_err() || byte[0] != READY {
        return Err(DriverError::ChildVanished);
    }
    join_cgroups(id, pid)?;
    parent
        .write_all(&[GO])
        .map_err(|_| DriverError::ChildVanished)?;
    let mut report = Vec::new();
    let _ = parent.read_to_end(&mut report);
    match report.as_slice() {
        [] => Ok(()),
        [step, errno @ ..] if errno.len() == 4 => Err(DriverError::Setup {
            step: Step::from_byte(*step).map_or("an unknown step", Step::name),
            source: io::Error::from_raw_os_error(i32::from_le_bytes([
                errno[0], errno[1], errno[2], errno[3],
            ])),
        }),
        _ => Err(DriverError::ChildVanished),
    }
}

// ANCHOR: child
/// The child, from the clone to the exec. System calls only: see [`Plan`].
fn child_main(
    plan: &Plan,
    argv: &[*const c_char],
    envp: &[*const c_char],
    socket: RawFd,
    parent_end: RawFd,
) -> isize {
    // SAFETY: plain system calls on file descriptors and C strings prepared before
    // the clone; none allocates.
    unsafe {
        // Die with the daemon's spawner thread (see `Driver::spawn`), first of all.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::close(parent_end);
        let mut go = 0u8;
        if libc::write(socket, [READY].as_ptr().cast(), 1) != 1
            || libc::read(socket, (&mut go as *mut u8).cast(), 1) != 1
            || go != GO
        {
            // The daemon died or gave up: nobody is waiting for this container.
            libc::_exit(1);
        }
        let step = match setup(plan) {
            Ok(()) => {
                libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                Step::Exec
            }
            Err(step) => step,
        };
        let mut report = [step as u8, 0, 0, 0, 0];
        report[1..].copy_from_slice(&Errno::last_raw().to_le_bytes());
        libc::write(socket, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

/// The container's world, built from inside its namespaces. Each call that fails
/// returns its [`Step`]; the errno is still set when the caller reads it.
///
/// # Safety
/// Only for the cloned child: it changes the process's mounts, root and stdio.
unsafe fn setup(plan: &Plan) -> Result<(), Step> {
    let ok = |ret: libc::c_int, step: Step| if ret < 0 { Err(step) } else { Ok(()) };
    let none = std::ptr::null::<c_char>();
    let (log, null) = (plan.log.as_raw_fd(), plan.null.as_raw_fd());
    ok(libc::dup2(null, 0), Step::Stdio)?;
    ok(libc::dup2(log, 1), Step::Stdio)?;
    ok(libc::dup2(log, 2), Step::Stdio)?;

    // ANCHOR: mounts
    // Nothing mounted from here on may propagate back into the host's namespace.
    let private = libc::MS_REC | libc::MS_PRIVATE;
    ok(
        libc::mount(none, c"/".as_ptr(), none, private, std::ptr::null()),
        Step::PrivateMounts,
    )?;
    // pivot_root needs the new root to be a mount point: bind the rootfs onto itself.
    let bind = libc::MS_BIND | libc::MS_REC;
    let rootfs = plan.rootfs.as_ptr();
    ok(
        libc::mount(rootfs, rootfs, none, bind, std::ptr::null()),
        Step::BindRootfs,
    )?;
    // A /proc of the new PID namespace: `ps` inside sees only the container.
    let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    ok(
        libc::mount(
            c"proc".as_ptr(),
            plan.proc_dir.as_ptr(),
            c"proc".as_ptr(),
            hardened,
            std::ptr::null(),
        ),
        Step::MountProc,
    )?;
    // A /dev of its own, with only the devices every program expects.
    ok(
        libc::mount(
            c"tmpfs".as_ptr(),
            plan.dev_dir.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID,
            c"mode=755".as_ptr().cast(),
        ),
        Step::MountDev,
    )?;
    for (path, device) in &plan.devices {
        ok(
            libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *device),
            Step::DeviceNode,
        )?;
        // mknod applies the daemon's umask; a device node must be 0666 nevertheless.
        ok(libc::chmod(path.as_ptr(), 0o666), Step::DeviceNode)?;
    }
    // ANCHOR_END: mounts

    // ANCHOR: pivot_root
    // `pivot_root(".", ".")` stacks the old root under the new one at "/"; unmounting
    // "." then detaches the old root, and no directory is needed to park it in.
    ok(libc::chdir(rootfs), Step::PivotRoot)?;
    let pivoted = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
    ok(pivoted as libc::c_int, Step::PivotRoot)?;
    ok(
        libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
        Step::DetachOldRoot,
    )?;
    // ANCHOR_END: pivot_root

    let hostname = plan.hostname.as_bytes();
    ok(
        libc::sethostname(hostname.as_ptr().cast(), hostname.len()),
        Step::Hostname,
    )?;
    ok(libc::chdir(plan.cwd.as_ptr()), Step::WorkingDir)
}
// ANCHOR_END: child

// ANCHOR: cgroups
/// Each `(directory, file, value)` a container's cgroups are made of.
///
/// On a cgroup v2 host (`cgroup.controllers` at the top) one directory holds both
/// limits. On a v1 host, or a hybrid one like the test hosts (v2 mounted, but the
/// controllers still in v1 hierarchies), each controller is its own tree:
/// `memory/berth-chapter02/<id>` and `pids/berth-chapter02/<id>`, with v1's file names.
fn cgroup_settings(id: &str) -> Vec<(PathBuf, &'static str, String)> {
    let root = Path::new(CGROUP_ROOT);
    if is_cgroup_v2() {
        let dir = root.join(CGROUP_PARENT).join(id);
        vec![
            (dir.clone(), "memory.max", MEMORY_LIMIT_BYTES.to_string()),
            (dir, "pids.max", PIDS_LIMIT.to_string()),
        ]
    } else {
        vec![
            (
                root.join("memory").join(CGROUP_PARENT).join(id),
                "memory.limit_in_bytes",
                MEMORY_LIMIT_BYTES.to_string(),
            ),
            (
                root.join("pids").join(CGROUP_PARENT).join(id),
                "pids.max",
                PIDS_LIMIT.to_string(),
            ),
        ]
    }
}

fn is_cgroup_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// Creates the container's cgroups, writes their limits, and moves `pid` into them.
/// The child waits for this (the GO of the handshake), so the command never runs
/// outside its limits.
fn join_cgroups(id: &str, pid: Pid) -> Result<(), DriverError> {
    if is_cgroup_v2() {
        // On v2 a controller works in a directory only if its parent hands it down.
        let root = Path::new(CGROUP_ROOT);
        let parent = root.join(CGROUP_PARENT);
        io_at("creating", &parent, fs::create_dir_all(&parent))?;
        // Best effort at the top: the host may have enabled them already.
        let _ = fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
        let control = parent.join("cgroup.subtree_control");
        io_at("writing", &control, fs::write(&control, "+memory +pids"))?;
    }
    for (dir, file, value) in cgroup_settings(id) {
        io_at("creating", &dir, fs::create_dir_all(&dir))?;
        let limit = dir.join(file);
        io_at("writing", &limit, fs::write(&limit, value))?;
        let procs = dir.join("cgroup.procs");
        io_at("writing", &procs, fs::write(&procs, pid.to_string()))?;
    }
    Ok(())
}

/// Removes container `id`'s cgroups (on exit, on `rm`, after a failed start). Best effort:
/// a directory still busy with a dying process stays, and only leaks.
pub fn remove_cgroups(id: &str) {
    for (dir, _, _) in cgroup_settings(id) {
        let _ = fs::remove_dir(dir);
    }
}
// ANCHOR_END: cgroups

/// What the image config says about how to run it.
#[derive(Debug, Default)]
struct ImageSettings {
    env: Vec<String>,
    working_dir: Option<String>,
    default_cmd: Vec<String>,
}

impl ImageSettings {
    fn of(image: &Image) -> ImageSettings {
        let Some(config) = image.config().config() else {
            return ImageSettings::default();
        };
        let mut default_cmd = config.entrypoint().clone().unwrap_or_default();
        default_cmd.extend(config.cmd().clone().unwrap_or_default());
        ImageSettings {
            env: config.env().clone().unwrap_or_default(),
            working_dir: config.working_dir().clone().filter(|dir| !dir.is_empty()),
            default_cmd,
        }
    }

    fn path(&self) -> String {
        self.env
            .iter()
            .find_map(|var| var.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string()
    }
}

/// Finds the executable file `program` names inside `rootfs`, resolving it along
/// `path` as `execvp` would, symlinks included but never out of the root. Returns its
/// path inside the container.
fn find_command(rootfs: &Path, program: &str, path: &str) -> Result<String, DriverError> {
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.to_string()]
    } else {
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{dir}/{program}"))
            .collect()
    };
    let executable = |candidate: &&String| {
        open_in_root(rootfs, candidate)
            .and_then(|file| file.metadata())
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if let Some(found) = candidates.iter().find(executable) {
        return Ok(found.clone());
    }
    let searched = if program.contains('/') {
        "that path".to_string()
    } else {
        format!("PATH={path}")
    };
    Err(DriverError::CommandNotFound {
        command: program.into(),
        searched,
    })
}

fn io_at<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, DriverError> {
    result.map_err(|source| DriverError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_holds_c_strings_and_always_a_path() {
        let settings = ImageSettings {
            env: vec!["A=1".into()],
            working_dir: Some("/tmp".into()),
            default_cmd: vec![],
        };
        let file = || File::open("/dev/null").unwrap();
        let cmd = ["sh".to_string(), "-c".into(), "true".into()];
        let plan = Plan::new(
            "0123456789abcdef",
            Path::new("/r/rootfs"),
            "/bin/sh",
            &cmd,
            &settings,
            file(),
            file(),
        )
        .unwrap();
        assert_eq!(plan.hostname.as_bytes(), b"0123456789ab");
        assert_eq!(plan.proc_dir.as_bytes(), b"/r/rootfs/proc");
        assert_eq!(plan.cwd.as_bytes(), b"/tmp");
        assert_eq!(plan.argv.len(), 3);
        assert!(plan.env.iter().any(|v| v.as_bytes().starts_with(b"PATH=")));
        assert_eq!(plan.devices[0].0.as_bytes(), b"/r/rootfs/dev/null");
    }

    #[test]
    fn a_nul_byte_is_refused() {
        let settings = ImageSettings {
            env: vec!["A=1\0B=2".into()],
            ..ImageSettings::default()
        };
        let file = || File::open("/dev/null").unwrap();
        let plan = Plan::new(
            "id",
            Path::new("/r"),
            "/bin/sh",
            &[],
            &settings,
            file(),
            file(),
        );
        assert!(matches!(plan, Err(DriverError::Unrepresentable { .. })));
    }

    #[test]
    fn every_step_survives_the_handshake() {
        for step in Step::ALL {
            assert_eq!(Step::from_byte(step as u8), Some(step));
        }
        assert_eq!(Step::from_byte(Step::ALL.len() as u8), None);
    }

    #[test]
    fn each_container_has_its_own_cgroups() {
        for (dir, _, _) in cgroup_settings("abc") {
            assert!(dir.ends_with("berth-chapter02/abc"), "{dir:?}");
        }
    }

    #[test]
    fn exit_codes_are_the_commands_own() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)).0, Some(7));
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), (Some(255), None));
        let (code, note) = exit_code(ExitStatus::from_raw(9));
        assert_eq!(code, Some(137));
        assert!(note.unwrap().contains("killed"));
    }
}
