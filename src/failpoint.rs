//! Failpoints: `PODNET_FAILPOINT=<name>` makes the process kill itself
//! (SIGKILL, as a crash or `kill -9` would) when it reaches the point of
//! that name, so a test can stop podnet exactly where a crash would hurt.
//! Points: `after-create` (a link created, not yet marked as podnet's);
//! `pause-after-step:N` stops (without dying) once an apply has run its
//! N-th step, so a test can `kill -9` a pass provably under way;
//! `fail-step:N` makes an apply's N-th step fail (an error, not a crash),
//! so a test can watch the rollback of the steps before it.
//! Unset, a point costs one environment lookup.

/// Dies here when `PODNET_FAILPOINT` names this point.
pub fn hit(name: &str) {
    if std::env::var_os("PODNET_FAILPOINT").is_some_and(|v| v == name) {
        tracing::error!("failpoint {name}: killing this process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Stops here for good when `PODNET_FAILPOINT` is `pause-after-step:<steps>`.
pub fn after_step(steps: usize) {
    let Some(v) = std::env::var_os("PODNET_FAILPOINT") else {
        return;
    };
    if v.to_str()
        .and_then(|v| v.strip_prefix("pause-after-step:"))
        .and_then(|n| n.parse::<usize>().ok())
        == Some(steps)
    {
        tracing::error!("failpoint pause-after-step:{steps}: stopped in the middle of an apply");
        loop {
            std::thread::park();
        }
    }
}

/// An error for step `step` (1-based) of an apply when `PODNET_FAILPOINT`
/// is `fail-step:<step>`.
pub fn fail_step(step: usize) -> Option<crate::error::Error> {
    let v = std::env::var_os("PODNET_FAILPOINT")?;
    let n = v
        .to_str()?
        .strip_prefix("fail-step:")?
        .parse::<usize>()
        .ok()?;
    (n == step).then(|| {
        tracing::error!("failpoint fail-step:{step}: this step fails");
        crate::error::Error::new(
            crate::error::ErrorKind::KernelRefused,
            format!("failpoint fail-step:{step}"),
        )
    })
}
