//! Why a command failed, its exit status, and the only ways the commands
//! write to stdout and stderr (none of which can panic).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use livesettings::Error;

/// The exit status when stdout's reader went away (`… | head`): what a
/// process killed by SIGPIPE reports to its shell (128 + 13).
const CLOSED_PIPE: u8 = 141;

/// A failed command. Each is reported in at most one line on stderr.
#[derive(Debug)]
pub enum Failure {
    /// An error from the library: exit 2, except a seq that is not in the
    /// change log, a file that is not a livesettings database (a missing
    /// or refused target, like [`Failure::Missing`]) and a write a rule
    /// refused: exit 1.
    Error(Error),
    /// The command's target is not there, or there was nothing to do: the
    /// message, exit 1.
    Missing(String),
    /// Stdout's reader closed the pipe: no message, exit 141.
    ClosedPipe,
    /// Stdout cannot be written (a full disk, an I/O error): exit 1.
    Stdout(std::io::Error),
    /// A write committed, but its seq could not be printed: exit 1, with a
    /// line saying it was written (so nobody retries it blindly).
    CommittedUnprinted { seq: i64, error: std::io::Error },
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Error(error)
    }
}

impl Failure {
    /// Reports the failure on stderr and returns the exit status.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Error(
                error @ (Error::UnknownSeq { .. }
                | Error::NotLivesettings { .. }
                | Error::Rejected { .. }),
            ) => {
                note(&format!("livesettings: {error}"));
                ExitCode::from(1)
            }
            Failure::Error(error) => {
                // One line: the library's messages already carry their cause.
                note(&format!("livesettings: {error}"));
                ExitCode::from(2)
            }
            Failure::Missing(message) => {
                note(&format!("livesettings: {message}"));
                ExitCode::from(1)
            }
            Failure::ClosedPipe => ExitCode::from(CLOSED_PIPE),
            Failure::Stdout(error) => {
                note(&format!("livesettings: cannot write to stdout: {error}"));
                ExitCode::from(1)
            }
            Failure::CommittedUnprinted { seq, error } => {
                note(&format!(
                    "livesettings: committed at seq {seq}, but cannot write to stdout: {error}"
                ));
                ExitCode::from(1)
            }
        }
    }
}

/// Prints the seq of a committed write: a stdout that cannot take it is
/// reported as such, never as a failed write.
pub fn out_committed(seq: i64) -> Result<(), Failure> {
    out(&seq.to_string()).map_err(|failure| match failure {
        Failure::Stdout(error) => Failure::CommittedUnprinted { seq, error },
        other => other,
    })
}

/// Writes one line to stdout and flushes it (`watch` prints as it goes, and
/// a write error must surface here, not in a destructor).
pub fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|error| match error.kind() {
            ErrorKind::BrokenPipe => Failure::ClosedPipe,
            _ => Failure::Stdout(error),
        })
}

/// Writes one line to stderr; a stderr that cannot be written is ignored
/// (there is nowhere left to report it).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
