//! The socket server: HTTP/1.1 (hyper) on a Unix socket, one task per
//! connection, every request bounded in size, time and concurrency.
//!
//! Limits ([`Policy`]) and what a client gets when it crosses them:
//!
//! | limit | default | past it |
//! |---|---|---|
//! | peer credentials (`SO_PEERCRED`, `SO_PEERGROUPS`) | root, podnetd's own uid, or the group | 403, then close |
//! | request line + headers | 16 KiB, 64 headers | 431 (hyper), then close |
//! | body | 64 KiB | 413, then close |
//! | headers, then body, each | 5 s | 408, then close (an idle keep-alive connection is simply closed) |
//! | a response the client does not read | 5 s blocked | close |
//! | open connections | 256 | not accepted until one ends: they wait in the kernel's backlog |
//! | refused peers at once | 8 (of the 256) | closed unanswered |
//!
//! Overload is handled by not accepting: the accept loop takes a permit
//! before it calls `accept`, so excess clients queue in the listen backlog
//! (each with its own client-side timeout) and the daemon never holds more
//! than `max_connections` sockets or tasks for the API. Refused peers hold a
//! permit only briefly and at most [`MAX_REFUSED_AT_ONCE`] of them at a time,
//! so a user who may not use the API cannot crowd out one who may.
//!
//! One file per job: `accept.rs` (the accept loop, who may connect, the
//! socket itself), `guarded.rs` (one connection's reads and writes under
//! their limits), `routes.rs` (the paths and their handlers).

mod accept;
mod guarded;
mod metrics_tcp;
mod routes;

pub use metrics_tcp::serve_metrics;

use std::time::Duration;

pub use accept::{bind, serve, Server, ServerStats, MAX_REFUSED_AT_ONCE};
pub(crate) use routes::percent_encode;
pub use routes::valid_container_id;

/// What the server accepts: who, how much and how slowly.
#[derive(Debug, Clone)]
pub struct Policy {
    /// podnet's group: its members may use the API besides root and the
    /// daemon's own user. `None`: root and the daemon's user only.
    pub group: Option<u32>,
    /// Largest request body (a PUT endpoint is well under 1 KiB).
    pub max_body_bytes: usize,
    /// Largest request line plus headers.
    pub max_header_bytes: usize,
    /// Time allowed for a request's headers, and again for its body; also
    /// how long a response may stay blocked on a client that does not read.
    pub read_timeout: Duration,
    /// Connections served at once; further clients wait in the backlog.
    pub max_connections: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            group: None,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }
}
