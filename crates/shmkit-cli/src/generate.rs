//! What is made from the command line's definition rather than written by
//! hand: `--help` and `help` output, shell completions (clap_complete) and
//! the manual pages (clap_mangen).

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::CommandFactory;
use clap_mangen::Man;

use crate::args::{self, Cli};
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
    let mut command = Cli::command();
    command.build();
    match dir {
        Some(dir) => {
            let writing = |source| CliError::Io {
                context: format!("writing manual pages into {}", dir.display()),
                source,
            };
            write_pages(&command, dir).map_err(writing)?;
            writeln!(
                out,
                "wrote shmkit.1 and a page per subcommand into {}",
                dir.display()
            )
            .map_err(CliError::stdout)
        }
        None => {
            let page = page(&command).map_err(CliError::stdout)?;
            out.write_all(&page).map_err(CliError::stdout)
        }
    }
}

/// Writes the page of `command` and, recursively, of each of its visible
/// subcommands into `dir` (what `clap_mangen::generate_to` does, with
/// [`page`]'s sections).
fn write_pages(command: &clap::Command, dir: &Path) -> io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = Man::new(command.clone());
    std::fs::write(dir.join(man.get_filename()), page(command)?)
}

/// The manual page of `command` in roff: clap_mangen's sections, except
/// that the text after the options (`after_help`: `shmkit --help` ends
/// with it), which clap_mangen would put under a heading "EXTRA", is the
/// sections KEYS AND NAMES and EXIT STATUS, from the same words
/// ([`args::KEYS_AND_NAMES`], [`args::EXIT_STATUS`]); the subcommands have
/// no such text.
fn page(command: &clap::Command) -> io::Result<Vec<u8>> {
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    if command.get_after_help().is_none() {
        man.render(&mut page)?;
        return Ok(page);
    }
    let mut sections: Vec<Section> = vec![
        Man::render_name_section,
        Man::render_synopsis_section,
        Man::render_description_section,
    ];
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        sections.push(Man::render_options_section);
    }
    if command.get_subcommands().any(|s| !s.is_hide_set()) {
        sections.push(Man::render_subcommands_section);
    }
    man.render_title(&mut page)?;
    // Each part clap_mangen renders starts with the same preamble (the
    // definition of the apostrophe string \*(Aq), which the title's
    // begins with too: once is enough.
    let preamble = page[..page.len() - last_line_len(&page)].to_vec();
    let append = |page: &mut Vec<u8>, render: Section| {
        let mut part = Vec::new();
        render(&man, &mut part)?;
        page.extend_from_slice(part.strip_prefix(preamble.as_slice()).unwrap_or(&part));
        io::Result::Ok(())
    };
    for render in sections {
        append(&mut page, render)?;
    }
    page.extend_from_slice(after_options().as_bytes());
    if command.get_version().is_some() {
        append(&mut page, Man::render_version_section)?;
    }
    Ok(page)
}

/// A section of a page as clap_mangen renders it.
type Section = fn(&Man, &mut dyn Write) -> io::Result<()>;

/// The sections KEYS AND NAMES and EXIT STATUS of shmkit(1), in roff.
fn after_options() -> String {
    let mut roff = ".SH \"KEYS AND NAMES\"\n".to_owned();
    for paragraph in args::KEYS_AND_NAMES {
        roff.push_str(&format!(".PP\n{}\n", roff_text(paragraph)));
    }
    roff.push_str(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in args::EXIT_STATUS {
        roff.push_str(&format!(".TP\n{code}\n{}\n", roff_text(meaning)));
    }
    roff
}

/// The length of the last line of `text` (its newline included).
fn last_line_len(text: &[u8]) -> usize {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    text.len() - body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// `text` as one roff text line, escaped as clap_mangen escapes its own:
/// backslashes, dashes, apostrophes (as the preamble's \*(Aq), and a
/// control character at the start.
fn roff_text(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('-', "\\-")
        .replace('\'', "\\*(Aq");
    if escaped.starts_with('.') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_text_escapes_what_roff_would_read_as_its_own() {
        assert_eq!(roff_text("plain"), "plain");
        assert_eq!(roff_text("--id '.' a\\b"), "\\-\\-id \\*(Aq.\\*(Aq a\\\\b");
        assert_eq!(roff_text(".starts"), "\\&.starts");
    }

    #[test]
    fn the_last_line_is_measured_with_its_newline() {
        assert_eq!(last_line_len(b"a\nbc\n"), 3);
        assert_eq!(last_line_len(b"bc\n"), 3);
        assert_eq!(last_line_len(b""), 0);
    }
}
