//! `shmkit bridge TOPIC`: the topic across machines, through the
//! `shmkit_bridge` crate (feature `bridge`).

use shmkit::topic::{Options, Policy};
use shmkit_bridge::Bridge;

use crate::error::CliError;
use crate::signals;

/// Runs the bridge until a stop signal, each event a line on stderr.
pub fn run(name: &str, listen: &[String], connect: &[String], lossy: bool) -> Result<(), CliError> {
    let mut options = Options::default();
    if lossy {
        options = options.policy(Policy::DropOldest);
    }
    let mut bridge = Bridge::new(name).options(options);
    for endpoint in listen {
        bridge = bridge.listen(endpoint);
    }
    for endpoint in connect {
        bridge = bridge.connect(endpoint);
    }
    signals::catch();
    bridge
        .run(&|| signals::caught().is_some(), &mut |event| {
            eprintln!("shmkit bridge {name}: {event}")
        })
        .map_err(|err| match err {
            shmkit_bridge::Error::Topic(err) => err.into(),
            other => CliError::Message(other.to_string()),
        })
}
