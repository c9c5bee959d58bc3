//! One error type for the library: a kind the CLI maps to an exit status,
//! and a chain of context.

use std::fmt;

/// What went wrong, in the terms an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The node files are wrong; nothing was changed.
    InvalidConfig,
    /// The host does not match what the files assume (a missing master, a
    /// name taken by an interface podnet does not own).
    Host,
    /// This kernel lacks a needed feature.
    NotSupported,
    /// The kernel refused a change.
    KernelRefused,
    /// An object is not there yet; trying again may succeed.
    NotFoundYet,
    /// A bug in podnet.
    Bug,
}

/// The library's error: a kind and a message with its context chain.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Adds context in front: `while doing X: <message>`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The process exit status for this error: 2 for invalid configuration,
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::InvalidConfig => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
