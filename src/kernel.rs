//! The one rtnetlink connection a run uses, and the single place that turns
//! kernel answers into podnet errors and decides what is idempotent.

use rtnetlink::Handle;

use crate::error::{Error, ErrorKind};

pub use nix::errno::Errno;

/// A connected rtnetlink socket.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

impl Kernel {
    /// Connects; must run inside a tokio runtime with I/O enabled.
    pub fn connect() -> crate::error::Result<Kernel> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
            Error::new(
                ErrorKind::KernelRefused,
                format!("cannot open an rtnetlink socket: {e}"),
            )
        })?;
        tokio::spawn(connection);
        Ok(Kernel { handle })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// The errno of a kernel refusal.
pub fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

/// A kernel refusal as a podnet error, naming the errno the way `ip` does.
pub fn refused(e: rtnetlink::Error) -> Error {
    let kind = match errno(&e) {
        Some(Errno::EOPNOTSUPP) => ErrorKind::NotSupported,
        Some(_) => ErrorKind::KernelRefused,
        None => ErrorKind::Bug,
    };
    let text = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    Error::new(kind, text)
}
