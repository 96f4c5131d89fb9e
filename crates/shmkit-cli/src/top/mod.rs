//! `shmkit top`: a live view of every segment and ring on the machine
//! ([`view`]), or with `--once` one snapshot as text or JSON. [`sample`]
//! takes the looks; this module turns two looks into sorted, filtered rows.

mod sample;
mod view;

use std::cmp::Ordering;
use std::io::Write;

use serde::Serialize;

use crate::args::{SortKey, TopArgs};
use crate::error::CliError;
use crate::ls::human_size;
use crate::output::{self, epoch_seconds, SCHEMA_VERSION};
use sample::{Object, Rates, Snapshot};

/// `shmkit top`.
pub fn run(args: &TopArgs, out: &mut impl Write) -> Result<(), CliError> {
    let order = Order {
        key: args.sort,
        reverse: args.reverse,
    };
    let filter = args.filter.clone().unwrap_or_default();
    if !args.once {
        return view::run(args.interval, order, filter);
    }
    // Rates need two looks one interval apart.
    let earlier = sample::look()?;
    std::thread::sleep(args.interval);
    let now = sample::look()?;
    let rows = rows(Some(&earlier), &now, order, &filter);
    let notes = sample::limits_of_view(rows.iter().map(|row| &row.object));
    let text = if args.json {
        output::json(&TopJson {
            schema_version: SCHEMA_VERSION,
            sampled_at: epoch_seconds(now.at),
            interval_seconds: now.taken.duration_since(earlier.taken).as_secs_f64(),
            objects: rows.iter().map(RowJson::new).collect(),
            notes,
        })
    } else {
        let mut text = output::table(&table(&rows));
        for note in notes {
            text.push_str(&format!("note: {note}\n"));
        }
        text
    };
    out.write_all(text.as_bytes()).map_err(CliError::stdout)
}

/// How rows are sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    pub key: SortKey,
    pub reverse: bool,
}

/// An object and its rates.
#[derive(Clone, Debug)]
pub struct Row {
    pub object: Object,
    pub rates: Rates,
}

/// The rows of `now` whose name contains `filter`, sorted.
pub fn rows(earlier: Option<&Snapshot>, now: &Snapshot, order: Order, filter: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = now
        .objects
        .iter()
        .filter(|object| object.name.contains(filter))
        .map(|object| Row {
            rates: sample::rates(earlier, now, object),
            object: object.clone(),
        })
        .collect();
    rows.sort_by(|a, b| {
        let by_key = compare(a, b, order.key);
        let by_key = if order.reverse {
            by_key.reverse()
        } else {
            by_key
        };
        by_key.then_with(|| a.object.name.cmp(&b.object.name))
    });
    rows
}

fn compare(a: &Row, b: &Row, key: SortKey) -> Ordering {
    // Missing values sort before every value.
    let float = |x: Option<f64>, y: Option<f64>| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    let (x, y) = (&a.object, &b.object);
    match key {
        SortKey::Name => x.name.cmp(&y.name),
        SortKey::Kind => x.kind.cmp(&y.kind),
        SortKey::Size => x.size.cmp(&y.size),
        SortKey::Resident => x.resident_bytes.cmp(&y.resident_bytes),
        SortKey::Attachers => x.attachers.cmp(&y.attachers),
        SortKey::Messages => float(a.rates.messages_per_sec, b.rates.messages_per_sec),
        SortKey::Bytes => float(a.rates.bytes_per_sec, b.rates.bytes_per_sec),
        SortKey::Fill => float(x.fill(), y.fill()),
    }
}

/// The column headings, shared by the text snapshot and the live view.
pub const HEADINGS: [&str; 9] = [
    "KIND", "NAME", "SIZE", "RESIDENT", "ATTACH", "MSG/S", "BYTES/S", "FILL", "STATE",
];

/// The cells of one row, as both the text snapshot and the live view show
/// them: sizes in powers of 1024, messages per second whole, `-` where
/// the object has no such value.
pub fn cells(row: &Row) -> [String; 9] {
    let object = &row.object;
    let dash = || "-".to_owned();
    let rate = |rate: Option<f64>, bytes: bool| match rate {
        Some(rate) if bytes => human_size(rate.round() as u64),
        Some(rate) => format!("{}", rate.round() as u64),
        None => dash(),
    };
    [
        object.kind.name().to_owned(),
        object.name.clone(),
        human_size(object.size),
        human_size(object.resident_bytes),
        object.attachers.to_string(),
        rate(row.rates.messages_per_sec, false),
        rate(row.rates.bytes_per_sec, true),
        object
            .fill()
            .map_or_else(dash, |fill| format!("{:.0}%", fill * 100.0)),
        state(object),
    ]
}

/// The state column: the object's state, a topic's members and worst lag,
/// a service's clients and calls in flight, and each dead member; or why
/// the object could not be read.
pub fn state(object: &Object) -> String {
    if let Some(why) = &object.unreadable {
        return format!("unreadable: {why}");
    }
    let mut words = vec![object.state.clone()];
    if object.kind == sample::ObjectKind::Topic {
        let count = |role| object.members.iter().filter(|m| m.role == role).count();
        words.push(format!("{} pub", count("publisher")));
        words.push(format!("{} sub", count("subscriber")));
        if let Some(lag) = object.members.iter().filter_map(|m| m.lag_bytes).max() {
            words.push(format!("lag {}", human_size(lag)));
        }
    }
    if object.kind == sample::ObjectKind::Service {
        let clients = object.members.iter().filter(|m| m.role == "client").count();
        words.push(format!(
            "{clients} client{}",
            if clients == 1 { "" } else { "s" }
        ));
        if let Some(calls) = object.calls_in_flight {
            words.push(format!("{calls} in flight"));
        }
    }
    for member in object.members.iter().filter(|m| !m.alive) {
        words.push(format!("{} {} DEAD", member.role, member.pid));
    }
    words.retain(|w| !w.is_empty());
    words.join(", ")
}

fn table(rows: &[Row]) -> Vec<Vec<String>> {
    let mut table = vec![HEADINGS.map(str::to_owned).to_vec()];
    table.extend(rows.iter().map(|row| cells(row).to_vec()));
    table
}

/// `top --once --json` (docs/JSON.md, "top").
#[derive(Serialize)]
struct TopJson<'a> {
    schema_version: u32,
    sampled_at: u64,
    interval_seconds: f64,
    objects: Vec<RowJson<'a>>,
    notes: Vec<String>,
}

/// One object of `top --once --json` (docs/JSON.md, "top object").
#[derive(Serialize)]
struct RowJson<'a> {
    #[serde(flatten)]
    object: &'a Object,
    fill: Option<f64>,
    messages_total: Option<u64>,
    bytes_total: Option<u64>,
    #[serde(flatten)]
    rates: Rates,
}

impl<'a> RowJson<'a> {
    fn new(row: &'a Row) -> RowJson<'a> {
        RowJson {
            object: &row.object,
            fill: row.object.fill(),
            messages_total: row.object.counters.map(|c| c.messages),
            bytes_total: row.object.counters.and_then(|c| c.bytes),
            rates: row.rates,
        }
    }
}
