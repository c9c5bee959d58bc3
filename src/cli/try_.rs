//! `podnetctl try`: put the node files in force on trial, like `netplan
//! try`. Unless confirmed (Enter at the prompt, or `podnetctl confirm`)
//! before the timeout, podnetd brings the previous generation back.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use super::{Cli, Format};
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format. With json, the trial is printed and podnetctl does
    /// not prompt: confirm with `podnetctl confirm`.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
    /// Time to confirm before the rollback: `120s`, `2m` or seconds.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: expected e.g. 120s or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        _ => return Err(format!("`{s}`: expected e.g. 120s or 2m")),
    };
    if (1..=3600).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err("the timeout must be between 1s and 1h".into())
    }
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    super::load(cli)?;
    let client = super::require_daemon(cli, ": `try` needs it to roll back when you cannot")?;
    let answer = client
        .try_files(args.timeout.as_secs())
        .map_err(super::api_error)?;
    if args.output == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = &answer.reconcile;
    println!(
        "generation {} is in force on trial ({}, {} step(s)); generation {} comes back in {}s unless confirmed",
        answer.trial.generation,
        r.outcome,
        r.steps,
        answer.trial.previous_generation,
        args.timeout.as_secs()
    );
    if !std::io::stdin().is_terminal() {
        println!("confirm with `podnetctl confirm`");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Press Enter to keep it; do nothing (or Ctrl-C) to let it roll back.");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_ok() {
            let _ = tx.send(());
        }
    });
    match rx.recv_timeout(args.timeout) {
        Ok(()) => {
            let trial = client.confirm().map_err(super::api_error)?;
            println!("generation {} confirmed", trial.generation);
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => {
            println!(
                "not confirmed: podnetd rolled back to generation {}",
                answer.trial.previous_generation
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

/// `podnetctl confirm`: keep the generation on trial.
pub fn confirm(cli: &Cli, args: &ConfirmArgs) -> Result<ExitCode> {
    let client = super::require_daemon(cli, "")?;
    let trial = client.confirm().map_err(super::api_error)?;
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&trial).unwrap_or_default()
        ),
        Format::Text => println!("generation {} confirmed", trial.generation),
    }
    Ok(ExitCode::SUCCESS)
}
