//! The main loop's epoll: the few file descriptors the shim's main thread sleeps on.
//!
//! The main thread waits for three things, and nothing else: `SIGCHLD` (a signalfd:
//! some child exited), the wake pipe (Shutdown), and the container's memory cgroup (an
//! OOM notification, see [`crate::oom`]). epoll, not poll, because the last one only
//! exists once Create has run, on a ttrpc thread: that thread adds it with
//! `epoll_ctl` while the main thread sleeps in `epoll_wait`, and the kernel takes it
//! into account at once. No thread per container is spent on watching memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// What woke the main loop: each registered fd carries one of these as its epoll data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The signalfd: some child exited.
    Signals = 0,
    /// The wake pipe: Shutdown asked the shim to end.
    Wake = 1,
    /// The container's memory cgroup: it ran out of memory.
    Oom = 2,
}

impl Token {
    fn from_data(data: u64) -> Option<Token> {
        [Token::Signals, Token::Wake, Token::Oom]
            .into_iter()
            .find(|t| *t as u64 == data)
    }
}

/// An epoll instance, shared by the main loop (which waits) and the task service
/// (which adds the OOM watch after Create).
pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes flags only; a non-negative result is a new fd we own.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            // SAFETY: fd was just created and is owned by nothing else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wakes the main loop with `token` whenever `fd` is readable (level-triggered:
    /// until whoever handles the token has read what is there).
    pub fn add(&self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token as u64,
        };
        // SAFETY: both fds are valid for the call; `event` outlives it.
        cvt(unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        })
        .map(drop)
    }

    /// Stops watching `fd` (before it is closed).
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        // SAFETY: both fds are valid for the call; DEL ignores the event argument.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Sleeps until something is ready; returns which tokens are, in no order.
    /// An interrupted wait returns no token.
    pub fn wait(&self) -> Vec<Token> {
        const EMPTY: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };
        let mut events = [EMPTY; 4];
        // SAFETY: `events` has room for the 4 events the kernel may write; no timeout.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        events[..n.max(0) as usize]
            .iter()
            .filter_map(|event| {
                // Copied out: epoll_event is packed, so no reference to its field.
                let data = event.u64;
                Token::from_data(data)
            })
            .collect()
    }
}

/// A libc return value as a Result: negative is the error in errno.
pub(crate) fn cvt(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_readable_fd_wakes_the_wait_with_its_token() {
        let poller = Poller::new().unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        poller.add(read.as_fd(), Token::Oom).unwrap();
        nix::unistd::write(&write, b"x").unwrap();
        assert_eq!(poller.wait(), vec![Token::Oom]);
        poller.remove(read.as_fd());
    }
}
