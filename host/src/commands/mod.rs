//! The `tocsin` subcommands. Each returns an [`Exit`] status; errors in the
//! input (unreadable file, bad JSON, invalid plugin for `notify`) come back
//! as `Err` and exit 2 with the message.

pub mod check;
pub mod compile;
pub mod dlq;
pub mod notify;
pub mod plugin;
pub mod publish;
pub mod serve;
pub mod token;

/// Exit statuses of the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Valid (`check`) or delivered (`notify`).
    Success = 0,
    /// Invalid (`check`) or not delivered (`notify`).
    Failure = 1,
    /// Bad usage or input.
    Usage = 2,
    /// `compile-component`: the component is refused (the reason as JSON
    /// on stdout).
    Refused = crate::sandbox::compiler::REFUSED_EXIT_CODE as isize,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}
