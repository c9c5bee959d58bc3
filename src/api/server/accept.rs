//! The accept loop and who may connect: permits before `accept`, the peer
//! check (`SO_PEERCRED` and `SO_PEERGROUPS`), the counters, and the socket
//! file the server listens on.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use super::guarded::Connection;
use super::Policy;
use crate::api::Backend;

/// How many refused peers are answered at once; more are closed unanswered.
pub const MAX_REFUSED_AT_ONCE: usize = 8;

/// How long [`Server::run`] waits for open connections after its shutdown
/// future completes (a reconcile in progress is allowed to finish).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Counters of a running server, readable while it runs.
#[derive(Debug, Clone, Default)]
pub struct ServerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicU64,
}

impl ServerStats {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.0.accepted.load(Ordering::Relaxed)
    }
    /// Connections from peers that may not use the API (answered 403 or,
    /// past [`MAX_REFUSED_AT_ONCE`], closed unanswered).
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }
    /// Refused peers closed without an answer because too many were open.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
    /// Connections open right now.
    pub fn open(&self) -> u64 {
        // `closed` is read first: a connection closing in between is then
        // counted as open, never as a negative.
        let closed = self.0.closed.load(Ordering::Acquire);
        self.accepted().saturating_sub(closed)
    }

    /// Counts a connection as ended (served, or closed unanswered).
    pub(super) fn closed_one(&self) {
        self.0.closed.fetch_add(1, Ordering::Release);
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets open
/// requests finish (for up to 10 s).
pub async fn serve<B: Backend>(
    listener: UnixListener,
    backend: Arc<B>,
    policy: Policy,
    shutdown: impl Future<Output = ()>,
) {
    Server::new(listener, backend, policy).run(shutdown).await
}

/// The socket server; [`serve`] is the short way to run one.
pub struct Server<B> {
    listener: UnixListener,
    backend: Arc<B>,
    policy: Arc<Policy>,
    stats: ServerStats,
}

impl<B: Backend> Server<B> {
    pub fn new(listener: UnixListener, backend: Arc<B>, policy: Policy) -> Self {
        Server {
            listener,
            backend,
            policy: Arc::new(policy),
            stats: ServerStats::default(),
        }
    }

    /// A handle on the counters, to read while the server runs.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let max = self.policy.max_connections.clamp(1, u32::MAX as usize);
        let permits = Arc::new(Semaphore::new(max));
        let refused_slots = Arc::new(Semaphore::new(MAX_REFUSED_AT_ONCE));
        let (stop, stopping) = watch::channel(false);
        let own_uid = nix::unistd::geteuid().as_raw();
        tokio::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
            };
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, accept would fail again at
                        // once: give the open connections time to end. Any
                        // other error (a peer gone before accept) is the
                        // peer's alone; the short pause only keeps a broken
                        // listener from spinning.
                        let pause = if e.raw_os_error().is_some_and(is_fd_exhaustion) { 100 } else { 5 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        continue;
                    }
                },
            };
            self.stats.0.accepted.fetch_add(1, Ordering::Relaxed);

            let refusal = match peer_refusal(&stream, self.policy.group, own_uid) {
                None => None,
                Some(why) => {
                    self.stats.0.refused.fetch_add(1, Ordering::Relaxed);
                    match refused_slots.clone().try_acquire_owned() {
                        Ok(slot) => Some((why, slot)),
                        Err(_) => {
                            self.stats.0.dropped.fetch_add(1, Ordering::Relaxed);
                            self.stats.closed_one();
                            continue;
                        }
                    }
                }
            };
            let conn = Connection {
                backend: self.backend.clone(),
                policy: self.policy.clone(),
                stats: self.stats.clone(),
                stopping: stopping.clone(),
            };
            tokio::spawn(async move {
                let _permit = permit;
                match refusal {
                    None => conn.serve(stream, None).await,
                    Some((why, _slot)) => conn.serve(stream, Some(why)).await,
                }
            });
        }

        drop(self.listener);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(max as u32)).await;
    }
}

fn is_fd_exhaustion(errno: i32) -> bool {
    errno == nix::errno::Errno::EMFILE as i32
        || errno == nix::errno::Errno::ENFILE as i32
        || errno == nix::errno::Errno::ENOBUFS as i32
        || errno == nix::errno::Errno::ENOMEM as i32
}

/// Why a peer may not use the API, or `None` when it may: root, the
/// daemon's own user (it could ptrace the daemon anyway), the group as
/// primary group, or the group among the peer's supplementary groups.
fn peer_refusal(stream: &UnixStream, group: Option<u32>, own_uid: u32) -> Option<String> {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot read the peer's credentials: {e}")),
    };
    let allowed = peer_allowed(cred.uid(), cred.gid(), group, own_uid, || {
        // Like SO_PEERCRED, the groups are those of the process that
        // connected, taken at connect(). A kernel that cannot tell them
        // (before 4.13) leaves the peer judged without them.
        peer_groups(stream.as_fd()).unwrap_or_default()
    });
    if allowed {
        return None;
    }
    Some(match group {
        Some(g) => format!(
            "uid {} (gid {}) may not use podnetd's socket: only root and members of group {g} may",
            cred.uid(),
            cred.gid()
        ),
        None => format!(
            "uid {} (gid {}) may not use podnetd's socket: only root may (no group is configured)",
            cred.uid(),
            cred.gid()
        ),
    })
}

fn peer_allowed(
    uid: u32,
    gid: u32,
    group: Option<u32>,
    own_uid: u32,
    supplementary: impl FnOnce() -> Vec<u32>,
) -> bool {
    if uid == 0 || uid == own_uid {
        return true;
    }
    match group {
        Some(g) => gid == g || supplementary().contains(&g),
        None => false,
    }
}

/// The supplementary groups of the process at the other end of the Unix
/// socket `fd`, as the kernel recorded them when it connected
/// (`SO_PEERGROUPS`, Linux 4.13), in the daemon's user namespace.
fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    // Asked with no room first: a peer without supplementary groups is
    // answered at once, any other gets ERANGE with the length the list
    // needs written to `len`. The list is fixed at connect(), so one retry
    // suffices; an ERANGE that asks for no more room ends the loop too.
    let mut groups: Vec<libc::gid_t> = Vec::new();
    loop {
        // At most NGROUPS_MAX (65536) gids: the length fits a socklen_t.
        let mut len = (groups.len() * GID) as libc::socklen_t;
        // SAFETY: `groups` owns `len` writable bytes of gid_t-aligned memory
        // and the kernel writes no more than `len` into it (SO_PEERGROUPS
        // fails with ERANGE instead); `len` is a valid socklen_t it may
        // overwrite; `fd` is an open descriptor borrowed for the call.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = len as usize;
        if r == 0 {
            groups.truncate(len / GID);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || len <= groups.len() * GID {
            return Err(e);
        }
        groups.resize(len.div_ceil(GID), 0);
    }
}

/// Makes the socket at `path` for the server: the parent directory (0755)
/// if missing, a stale socket from a dead daemon removed, mode 0660 and, with
/// `group`, owner root:group.
///
/// Refuses when a daemon answers on `path`, and when `path` is something
/// other than a socket. Call it from within a tokio runtime.
pub fn bind(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                        "{} is in use: another podnetd (or some other program) is listening on it",
                        path.display()
                    ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot tell whether {} is stale: {e}", path.display()),
                    ))
                }
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: not removing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Until the chmod below the socket has the umask's mode; the peer check
    // is what guards it in any case.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(path, Some(0), Some(g))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_root_the_daemon_user_or_in_the_group() {
        let none = Vec::new;
        assert!(peer_allowed(0, 0, None, 1000, none));
        assert!(peer_allowed(1000, 1000, None, 1000, none));
        assert!(!peer_allowed(1001, 1001, None, 1000, none));
        assert!(peer_allowed(1001, 42, Some(42), 1000, none));
        assert!(peer_allowed(1001, 1001, Some(42), 1000, || vec![7, 42]));
        assert!(!peer_allowed(1001, 1001, Some(42), 1000, || vec![7]));
    }

    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut want: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        want.sort_unstable();
        for end in [a.as_fd(), b.as_fd()] {
            let mut got = peer_groups(end).unwrap();
            got.sort_unstable();
            assert_eq!(got, want);
        }
    }
}
