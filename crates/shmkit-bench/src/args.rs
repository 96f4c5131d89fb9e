//! The options of `shmkit bench`, for the command to embed
//! (`Bench(shmkit_bench::BenchArgs)` in its subcommands).

use std::time::Duration;

use clap::Args;

use crate::transports::Transport;

/// The options of `shmkit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer messages per measurement: the whole run takes under a minute
    #[arg(long)]
    pub quick: bool,
    /// Payload sizes, comma-separated, from 8 bytes to 1M (K and M suffixes multiply by 1024 and 1024²)
    #[arg(
        long,
        value_name = "SIZES",
        value_delimiter = ',',
        value_parser = parse_size,
        // One comma-separated text, so that --help shows the default as
        // the option is written.
        default_value = "8,64,1K,64K"
    )]
    pub sizes: Vec<u64>,
    /// Only these transports, comma-separated [default: all]; the floor and memcpy are always measured, bare-slots like a transport
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub transports: Vec<Transport>,
    /// How long a shmkit-block ring spins before it sleeps on the futex (0, 500ns, 20us, 1ms)
    /// [default: adaptive, about as long as a wake-up costs, as the library does]
    #[arg(long, value_name = "DURATION", value_parser = parse_spin)]
    pub block_spin: Option<Duration>,
    /// Print one JSON array instead of the tables: a record per transport and size (the
    /// references as transports floor and memcpy) with the fields transport, size, rtt_p50_ns,
    /// rtt_p99_ns, rtt_p999_ns, msgs_per_sec and bytes_per_sec (null where not measured), and
    /// for a stream stream_trials: each round's msgs_per_sec and
    /// floor_before_ns and floor_after_ns (the p50 of the floor just before and after it), in order
    #[arg(long)]
    pub json: bool,
    /// Messages per measurement, for tests: N round trips and N streamed, after as many warm-up
    /// messages as N/10 (at least 1)
    #[arg(long, value_name = "N", hide = true)]
    pub messages: Option<u64>,
    /// For tests: the sender of every stream skips one sequence number, which must fail the run
    #[arg(long, hide = true)]
    pub inject_skip: bool,
}

/// Parses a payload size: digits, optionally with a K or M suffix (also
/// `KiB`, `MiB`, any case) multiplying by 1024 or 1024². Whether the size
/// is one the bench can measure is checked when it runs.
fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        _ if digits.is_empty() => None,
        "" | "b" => Some(0),
        "k" | "kib" => Some(10),
        "m" | "mib" => Some(20),
        _ => None,
    };
    let number = shift.and_then(|_| digits.parse::<u64>().ok());
    match (number, shift) {
        (Some(number), Some(shift)) => number
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("{text} bytes is far too many")),
        _ => Err("expected a number of bytes such as 64, 1K or 1M".to_owned()),
    }
}

/// Parses `--block-spin`: a whole number with a unit, `ns`, `us` (or
/// `µs`), `ms` or `s`; or `0`.
pub fn parse_spin(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let expected = || "expected a duration such as 0, 500ns, 20us or 1ms".to_owned();
    let number: u64 = digits.parse().map_err(|_| expected())?;
    let nanos_per = match unit {
        "" if number == 0 => 0,
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(expected()),
    };
    number
        .checked_mul(nanos_per)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{text} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_k_and_m() {
        assert_eq!(parse_size("8"), Ok(8));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1mib"), Ok(1 << 20));
        for bad in ["", "K", "1G", "-1", "1.5K", " 8", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("18446744073709551615K").is_err());
    }

    #[test]
    fn sizes_default_to_four_and_help_shows_them_comma_separated() {
        use clap::{CommandFactory, Parser};

        #[derive(Parser)]
        struct Bench {
            #[command(flatten)]
            args: BenchArgs,
        }
        assert_eq!(
            Bench::parse_from(["bench"]).args.sizes,
            [8, 64, 1024, 65536]
        );
        let help = Bench::command().render_long_help().to_string();
        assert!(help.contains("[default: 8,64,1K,64K]"), "{help}");
    }

    #[test]
    fn spins_need_a_unit() {
        assert_eq!(parse_spin("0"), Ok(Duration::ZERO));
        assert_eq!(parse_spin("500ns"), Ok(Duration::from_nanos(500)));
        assert_eq!(parse_spin("20us"), Ok(Duration::from_micros(20)));
        assert_eq!(parse_spin("1ms"), Ok(Duration::from_millis(1)));
        for bad in ["", "5", "1h", "ns", "-1ms"] {
            assert!(parse_spin(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
