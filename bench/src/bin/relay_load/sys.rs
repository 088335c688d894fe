//! The load generator's own `unsafe`: epoll and the CPU clock. Batched datagram I/O lives in
//! the shared `udp-batch` crate (the edge uses it too).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

pub use udp_batch::*;

/// A minimal level-triggered epoll set keyed by `u64` tokens.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new epoll instance with room for `cap` events per wait.
    pub fn new(cap: usize) -> io::Result<Self> {
        // SAFETY: plain system call; the fd is owned by the returned value and closed on drop.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; cap.max(1)],
        })
    }

    /// Watches `fd` for readability (and writability with `write`).
    pub fn add(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, write)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, write)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if write { libc::EPOLLOUT } else { 0 }) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: forever) and returns the ready `(token, readable,
    /// writable)` triples.
    pub fn wait(&mut self, timeout_ms: i32, out: &mut Vec<(u64, bool, bool)>) -> io::Result<()> {
        out.clear();
        // SAFETY: `events` has `len` initialised slots the kernel may overwrite.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        for ev in &self.events[..rc as usize] {
            let bits = ev.events;
            let token = ev.u64;
            let err = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            out.push((
                token,
                bits & libc::EPOLLIN as u32 != 0 || err,
                bits & libc::EPOLLOUT as u32 != 0 || err,
            ));
        }
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Clock ticks per second for /proc CPU times.
pub fn clock_ticks() -> u64 {
    // SAFETY: plain system call without pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Pins the calling thread to `cpus` (sched_setaffinity), e.g. the null relay's threads to
/// the cores a server would get when the load is pinned elsewhere.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} is out of range"),
            ));
        }
        // SAFETY: `c` is below CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t and its size is passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPU numbers, from a list as taskset takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses a CPU list as taskset takes it: numbers and ranges, comma-separated ("0-2,5").
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("not a CPU number: {t:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b >= libc::CPU_SETSIZE as usize {
                    return Err(format!("not a CPU range: {part:?}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    if cpus.is_empty() {
        return Err("no CPU given".into());
    }
    Ok(CpuList(cpus))
}

#[cfg(test)]
mod tests {
    use super::{parse_cpu_list, CpuList};

    #[test]
    fn cpu_lists_read_as_taskset_writes_them() {
        assert_eq!(parse_cpu_list("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpu_list("0-2,5"), Ok(CpuList(vec![0, 1, 2, 5])));
        assert_eq!(parse_cpu_list(" 3 , 1 "), Ok(CpuList(vec![3, 1])));
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("0-99999").is_err());
    }
}
