//! What is made from the command line's definition rather than written by
//! hand: `--help` and `help` output, shell completions (clap_complete) and
//! the manual pages (clap_mangen).

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::args::Cli;
use crate::error::{CliError, EXIT_USAGE};

/// Prints what clap stopped at and gives the exit status: `--help` and
/// `--version` to stdout (0, or 1 if stdout cannot take it, as with
/// `>/dev/full`; a closed pipe is no failure), usage errors to stderr (2).
pub fn report_clap(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let text = if io::stdout().is_terminal() {
                err.render().ansi().to_string()
            } else {
                err.render().to_string()
            };
            let mut out = io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(source) => CliError::stdout(source).report(),
            }
        }
        _ => {
            let _ = err.print();
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE))
        }
    }
}

/// `shmkit help [COMMAND...]`: the same text as `shmkit COMMAND... --help`.
pub fn help(command: &[String], out: &mut impl Write) -> Result<(), CliError> {
    let args = std::iter::once("shmkit")
        .chain(command.iter().map(String::as_str))
        .chain(["--help"]);
    match Cli::command().try_get_matches_from(args) {
        Err(err) if err.kind() == ErrorKind::DisplayHelp => out
            .write_all(err.render().to_string().as_bytes())
            .map_err(CliError::stdout),
        _ => Err(CliError::Usage(format!(
            "no such command: shmkit {} (`shmkit --help` lists them)",
            command.join(" ")
        ))),
    }
}

/// `shmkit completions SHELL`: the completion script for that shell.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> Result<(), CliError> {
    // Into a buffer first: the generators panic when a write fails.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "shmkit", &mut script);
    out.write_all(&script).map_err(CliError::stdout)
}

/// `shmkit man`: shmkit(1) in roff on `out`, or with `dir`, that page and
/// one per visible subcommand (shmkit-ls.1, …) written into `dir`.
pub fn man(dir: Option<&Path>, out: &mut impl Write) -> Result<(), CliError> {
    let command = Cli::command();
    match dir {
        Some(dir) => {
            clap_mangen::generate_to(command, dir).map_err(|source| CliError::Io {
                context: format!("writing manual pages into {}", dir.display()),
                source,
            })?;
            writeln!(
                out,
                "wrote shmkit.1 and a page per subcommand into {}",
                dir.display()
            )
            .map_err(CliError::stdout)
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(CliError::stdout)?;
            out.write_all(&page).map_err(CliError::stdout)
        }
    }
}
