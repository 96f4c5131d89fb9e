//! The live view of `shmkit top`: ratatui on crossterm, a look every
//! interval, keys to sort and filter, `q` to quit.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use ratatui::{DefaultTerminal, Frame};

use super::sample::{self, Snapshot};
use super::{cells, rows, Order, Row, HEADINGS};
use crate::args::SortKey;
use crate::error::CliError;

/// What the view shows and how.
struct View {
    interval: Duration,
    order: Order,
    filter: String,
    /// The filter being typed after `/`, until Enter or Esc.
    editing: Option<String>,
    earlier: Option<Snapshot>,
    now: Snapshot,
    error: Option<String>,
}

/// Runs the view until `q` (or Esc, Ctrl-C, SIGINT, SIGTERM, SIGHUP); the
/// terminal is restored however it ends.
pub fn run(interval: Duration, order: Order, filter: String) -> Result<(), CliError> {
    if !std::io::stdout().is_terminal() {
        return Err(CliError::Message(
            "top draws on a terminal, and standard output is none: \
             `shmkit top --once` prints one snapshot (--json for scripts)"
                .to_owned(),
        ));
    }
    // A process outside the terminal's foreground process group (under
    // `timeout`, or started with `&`) is stopped or interrupted by SIGTTOU
    // when it sets the terminal up: say so instead. A terminal that is not
    // this process's controlling one has no group to ask about, and sends
    // no SIGTTOU either.
    let stdout = std::io::stdout();
    if rustix::termios::tcgetpgrp(&stdout).is_ok_and(|group| group != rustix::process::getpgrp()) {
        return Err(CliError::Message(
            "top: not the terminal's foreground process group \
             (run it in the foreground, or `timeout --foreground`)"
                .to_owned(),
        ));
    }
    // SIGINT, SIGTERM and SIGHUP end the view like q, so that the terminal
    // is restored before the process dies of the signal (main re-raises it).
    crate::signals::catch();
    let now = sample::look()?;
    let mut view = View {
        interval,
        order,
        filter,
        editing: None,
        earlier: None,
        now,
        error: None,
    };
    let mut terminal = ratatui::try_init().map_err(|source| CliError::Io {
        context: "setting up the terminal".to_owned(),
        source,
    })?;
    let result = view.event_loop(&mut terminal);
    ratatui::restore();
    result
}

impl View {
    fn event_loop(&mut self, terminal: &mut DefaultTerminal) -> Result<(), CliError> {
        let terminal_error = |source| CliError::Io {
            context: "drawing on the terminal".to_owned(),
            source,
        };
        let mut next = Instant::now() + self.interval;
        loop {
            terminal
                .draw(|frame| self.draw(frame))
                .map_err(terminal_error)?;
            if crate::signals::caught().is_some() {
                return Ok(());
            }
            // Short enough slices to see a caught signal soon.
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(crate::signals::SLICE);
            // A caught signal interrupts the wait (EINTR): look at it above.
            let interrupted = |err: &std::io::Error| err.kind() == std::io::ErrorKind::Interrupted;
            let event = match event::poll(wait) {
                Ok(true) => event::read().map(Some),
                Ok(false) => Ok(None),
                Err(err) => Err(err),
            };
            match event {
                Ok(Some(Event::Key(key))) => match self.key(key) {
                    Action::Quit => return Ok(()),
                    Action::Refresh => next = Instant::now(),
                    Action::Redraw => {}
                },
                Ok(_) => {}
                Err(err) if interrupted(&err) => continue,
                Err(err) => return Err(terminal_error(err)),
            }
            if Instant::now() >= next {
                self.refresh();
                next = Instant::now() + self.interval;
            }
        }
    }

    fn refresh(&mut self) {
        match sample::look() {
            Ok(now) => {
                self.earlier = Some(std::mem::replace(&mut self.now, now));
                self.error = None;
            }
            Err(err) => self.error = Some(err.to_string()),
        }
    }

    fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind != KeyEventKind::Press {
            return Action::Redraw;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(typed) = &mut self.editing {
            match key.code {
                KeyCode::Enter => self.filter = self.editing.take().unwrap_or_default(),
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    typed.pop();
                }
                KeyCode::Char(c) => typed.push(c),
                _ => {}
            }
            return Action::Redraw;
        }
        let sort = match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char(' ') => return Action::Refresh,
            KeyCode::Char('/') => {
                // A new filter, typed from nothing; Enter on nothing clears it.
                self.editing = Some(String::new());
                return Action::Redraw;
            }
            KeyCode::Char('n') => SortKey::Name,
            KeyCode::Char('k') => SortKey::Kind,
            KeyCode::Char('s') => SortKey::Size,
            KeyCode::Char('r') => SortKey::Resident,
            KeyCode::Char('a') => SortKey::Attachers,
            KeyCode::Char('m') => SortKey::Messages,
            KeyCode::Char('b') => SortKey::Bytes,
            KeyCode::Char('f') => SortKey::Fill,
            _ => return Action::Redraw,
        };
        // The same key again reverses the order; a new one sorts the
        // numbers largest first, names A to Z.
        self.order = if self.order.key == sort {
            Order {
                key: sort,
                reverse: !self.order.reverse,
            }
        } else {
            Order {
                key: sort,
                reverse: !matches!(sort, SortKey::Name | SortKey::Kind),
            }
        };
        Action::Redraw
    }

    fn draw(&self, frame: &mut Frame) {
        let rows: Vec<Row> = rows(self.earlier.as_ref(), &self.now, self.order, &self.filter);
        let notes = sample::limits_of_view(rows.iter().map(|row| &row.object));
        let [title, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1 + notes.len() as u16 + u16::from(self.error.is_some())),
        ])
        .areas(frame.area());

        let direction = if self.order.reverse { "desc" } else { "asc" };
        let filter = match (&self.editing, self.filter.as_str()) {
            (Some(typed), _) => format!("  filter: {typed}_"),
            (None, "") => String::new(),
            (None, filter) => format!("  filter: {filter}"),
        };
        frame.render_widget(
            Paragraph::new(Line::from(format!(
                "shmkit top: {} object{}, every {:.1} s  sort: {:?} {direction}{filter}",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                self.interval.as_secs_f64(),
                self.order.key,
            )))
            .bold(),
            title,
        );

        let longest = rows.iter().map(|row| row.object.name.chars().count()).max();
        let name_width = longest.unwrap_or(0).clamp(8, 64) as u16;
        let widths = [
            Constraint::Length(5),
            Constraint::Length(name_width),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Fill(1),
        ];
        let table_rows = rows.iter().map(|row| {
            let style = if row.object.has_dead_member() {
                Style::new().red().add_modifier(Modifier::BOLD)
            } else if row.object.unreadable.is_some() {
                Style::new().dim()
            } else {
                Style::new()
            };
            TableRow::new(cells(row).map(Cell::from)).style(style)
        });
        let header = TableRow::new(HEADINGS.map(Cell::from)).reversed();
        frame.render_widget(Table::new(table_rows, widths).header(header), body);

        let mut lines: Vec<Line> = Vec::new();
        if let Some(error) = &self.error {
            lines.push(Line::from(format!("error: {error}")).red());
        }
        lines.extend(
            notes
                .into_iter()
                .map(|note| Line::from(format!("note: {note}")).yellow()),
        );
        lines.push(Line::from(
            "q quit  / filter (Enter applies, Esc cancels)  sort: n name k kind s size r resident a attachers m msg/s b bytes/s f fill  space refresh",
        ).dim());
        frame.render_widget(Paragraph::new(lines), footer);
    }
}

enum Action {
    Quit,
    Refresh,
    Redraw,
}
