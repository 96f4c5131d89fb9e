//! What the `shmkit` binary documents about itself: help, completions and
//! manual pages, and JSON output (ls, stat, top --once) against docs/JSON.md.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;
use shmkit::{Key, ReadOnly, Segment};

#[allow(dead_code)]
mod common;

use common::{
    create_sysv, failed, json, refused_by_clap, shmkit, shmkit_as_nobody, succeeded, text, TestKey,
    SHMKIT,
};

// ---------------------------------------------------------------------------
// Help

#[test]
fn help_works_as_a_subcommand_and_fails_when_it_cannot_be_written() {
    let help = succeeded(&shmkit(&["help", "--help"]));
    assert!(help.contains("Usage: shmkit help [COMMAND]..."), "{help}");
    assert_eq!(
        succeeded(&shmkit(&["help", "rm"])),
        succeeded(&shmkit(&["rm", "--help"]))
    );
    assert_eq!(
        succeeded(&shmkit(&["help"])),
        succeeded(&shmkit(&["--help"]))
    );
    failed(
        &shmkit(&["help", "frobnicate"]),
        2,
        "no such command: shmkit frobnicate",
    );

    let rm = succeeded(&shmkit(&["rm", "--help"]));
    assert!(
        rm.contains("Usage: shmkit rm [-v] <KEY>... [--id <ID>]..."),
        "{rm}"
    );
    assert!(rm.contains("shmkit rm [-v] --all"), "{rm}");

    let full = Command::new(SHMKIT)
        .arg("--help")
        .stdout(std::fs::File::create("/dev/full").expect("open /dev/full"))
        .output()
        .expect("run shmkit");
    assert_eq!(full.status.code(), Some(1));
    assert!(
        text(&full.stderr).starts_with("shmkit: writing standard output: "),
        "{}",
        text(&full.stderr)
    );
}

#[test]
fn completions_and_manual_pages_are_generated() {
    let bash = succeeded(&shmkit(&["completions", "bash"]));
    assert!(bash.contains("_shmkit()"), "{bash}");
    for word in ["ls", "top", "--noheadings", "--limits"] {
        assert!(bash.contains(word), "{word} not in the bash completions");
    }
    assert!(succeeded(&shmkit(&["completions", "zsh"])).starts_with("#compdef shmkit"));
    assert!(succeeded(&shmkit(&["completions", "fish"])).contains("complete -c shmkit"));
    refused_by_clap(&shmkit(&["completions", "tcsh"]), "invalid value 'tcsh'");

    let page = succeeded(&shmkit(&["man"]));
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH shmkit 1"), "{page}");
    assert!(page.contains("shmkit\\-top"), "{page}");
    // The text that ends `--help` is proper sections, not clap_mangen's
    // "EXTRA", and the apostrophe preamble comes once.
    assert!(!page.contains("EXTRA"), "{page}");
    let keys = page
        .find(".SH \"KEYS AND NAMES\"\n.PP\nKEY names a segment")
        .expect("KEYS AND NAMES");
    let exit = page
        .find(".SH \"EXIT STATUS\"\n.TP\n0\nsuccess")
        .expect("EXIT STATUS");
    let version = page.find(".SH VERSION").expect("VERSION");
    assert!(keys < exit && exit < version, "{page}");
    assert!(page.contains(".TP\n2\nthe command line is wrong"), "{page}");
    assert_eq!(page.matches(".ds Aq").count(), 2, "{page}");
    let help = succeeded(&shmkit(&["--help"]));
    assert!(help.contains("\n\nExit status:\n  0  success,"), "{help}");

    let dir = std::env::temp_dir().join(format!("shmkit-cli-test-{}-man", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a directory");
    let wrote = shmkit(&["man", "--dir", dir.to_str().expect("UTF-8")]);
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("list it")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let installed = std::fs::read_to_string(dir.join("shmkit.1"));
    std::fs::remove_dir_all(&dir).expect("remove the directory");
    succeeded(&wrote);
    assert_eq!(installed.expect("shmkit.1"), page);
    for page in ["shmkit.1", "shmkit-ls.1", "shmkit-top.1", "shmkit-rm.1"] {
        assert!(pages.contains(page), "{page} not in {pages:?}");
    }
}

// ---------------------------------------------------------------------------
// JSON, against docs/JSON.md

/// The fields docs/JSON.md lists for each object, by its `## name`.
fn documented_fields() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/JSON.md");
    let doc = std::fs::read_to_string(path).expect("docs/JSON.md");
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            current = Some(name.to_owned());
        } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("| `")) {
            let field = rest.split('`').next().expect("a field name").to_owned();
            sections
                .entry(name.clone())
                .or_insert_with(BTreeSet::new)
                .insert(field);
        }
    }
    sections
}

#[track_caller]
fn assert_documented(docs: &BTreeMap<String, BTreeSet<String>>, section: &str, value: &Value) {
    let documented = docs
        .get(section)
        .unwrap_or_else(|| panic!("docs/JSON.md has no section {section}"));
    let actual: BTreeSet<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{section} is not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    assert_eq!(&actual, documented, "{section}: {value}");
    if documented.contains("schema_version") {
        assert_eq!(value["schema_version"], 1, "{section}");
    }
}

#[test]
fn json_outputs_have_exactly_the_documented_fields() {
    let docs = documented_fields();
    let (key, name) = (TestKey::sysv(), TestKey::posix());
    create_sysv(&key, "4K", &[]);
    succeeded(&shmkit(&["create", &name.arg(), "--size", "4K"]));
    let attached = Segment::open(&key.0)
        .expect("open")
        .attach(ReadOnly)
        .expect("attach");
    let ring_name = format!("cli-test-{}-json", std::process::id());
    let ring_segment =
        TestKey(Key::posix(&format!("/shmkit.ring.{ring_name}")).expect("a valid name"));
    let mut producer = shmkit::ring::Producer::open(&ring_name).expect("make a ring");
    producer.send(b"counted").expect("send");
    // A topic with a publisher and a subscriber, and a service with a server.
    let topic_name = format!("cli-test-{}-a-topic", std::process::id());
    let topic_segment =
        TestKey(Key::posix(&format!("/shmkit.topic.{topic_name}")).expect("a valid name"));
    let subscriber = shmkit::topic::Subscriber::open(&topic_name).expect("make a topic");
    let publisher = shmkit::topic::Publisher::open(&topic_name).expect("publish");
    let service_name = format!("cli-test-{}-a-service", std::process::id());
    let service_segment =
        TestKey(Key::posix(&format!("/shmkit.service.{service_name}")).expect("a valid name"));
    let server = shmkit::service::Server::open(&service_name).expect("make a service");

    let sysv = json(&shmkit(&["stat", &key.arg(), "--json"]));
    assert_documented(&docs, "segment", &sysv);
    assert_documented(&docs, "attacher", &sysv["attachers"][0]);
    assert!(sysv["mode"].is_u64() && sysv["size"].is_u64() && sysv["creator_pid"].is_i64());
    let posix = json(&shmkit(&["stat", &name.arg(), "--json"]));
    assert_documented(&docs, "segment", &posix);
    let ring = json(&shmkit(&["stat", "--ring", &ring_name, "--json"]));
    assert_documented(&docs, "segment", &ring);
    assert_documented(&docs, "ring", &ring["ring"]);
    assert_documented(&docs, "endpoint", &ring["ring"]["producer"]);
    let topic = json(&shmkit(&["stat", &topic_segment.arg(), "--json"]));
    assert_documented(&docs, "segment", &topic);
    assert_documented(&docs, "topic", &topic["topic"]);
    assert_documented(&docs, "topic publisher", &topic["topic"]["publishers"][0]);
    assert_documented(&docs, "topic subscriber", &topic["topic"]["subscribers"][0]);
    let service = json(&shmkit(&["stat", &service_segment.arg(), "--json"]));
    assert_documented(&docs, "segment", &service);
    assert_documented(&docs, "service", &service["service"]);

    let listed = json(&shmkit(&["ls", "--json"]));
    for element in listed.as_array().expect("an array") {
        assert_documented(&docs, "segment", element);
    }

    let limits = json(&shmkit(&["ls", "--limits", "--json"]));
    assert_documented(&docs, "limits", &limits);
    let summary = json(&shmkit(&["ls", "--summary", "--json"]));
    assert_documented(&docs, "summary", &summary);
    assert_documented(&docs, "totals", &summary["sysv"]);
    assert_documented(&docs, "totals", &summary["posix"]);

    let top = json(&shmkit(&[
        "top",
        "--once",
        "--json",
        "--interval",
        "0.1",
        "--filter",
        &ring_name,
    ]));
    assert_documented(&docs, "top", &top);
    let objects = top["objects"].as_array().expect("an array");
    assert_eq!(objects.len(), 1, "{top}");
    assert_documented(&docs, "top object", &objects[0]);
    assert_documented(&docs, "member", &objects[0]["members"][0]);
    assert_eq!(objects[0]["messages_total"], 1);

    drop((producer, attached, ring_segment));
    drop((publisher, subscriber, topic_segment));
    drop((server, service_segment));
}

#[test]
fn top_as_an_unprivileged_user_shows_what_it_may_read_and_says_what_not() {
    let name = format!("cli-test-{}-top", std::process::id());
    let segment = TestKey(Key::posix(&format!("/shmkit.ring.{name}")).expect("a valid name"));
    // Mode 600, owned by root: uid 65534 may list it but not read it.
    let producer = shmkit::ring::Producer::open(&name).expect("make a ring");
    let once = ["top", "--once", "--interval", "0.1", "--filter", &name];
    let Some(output) = shmkit_as_nobody(&once) else {
        return;
    };
    let text = succeeded(&output);
    let row = text
        .lines()
        .find(|line| line.contains(&name))
        .unwrap_or_else(|| panic!("{name} not in {text}"));
    assert!(row.starts_with("ring "), "{text}");
    assert!(row.ends_with("unreadable: permission denied"), "{text}");
    assert!(
        text.contains(&format!(
            "note: 1 object(s) could not be read by this user: {name} (run as their owner or root"
        )),
        "{text}"
    );
    assert!(
        text.contains("note: POSIX attachers are counted only in this user's processes"),
        "{text}"
    );

    let mut json_args = once.to_vec();
    json_args.push("--json");
    let snapshot = json(&shmkit_as_nobody(&json_args).expect("as root"));
    let object = &snapshot["objects"][0];
    assert_eq!(object["unreadable"], "permission denied", "{snapshot}");
    assert_eq!(object["messages_per_sec"], Value::Null);
    assert_eq!(snapshot["notes"].as_array().map(Vec::len), Some(2));

    // Root reads it.
    let root = json(&shmkit(&json_args));
    assert_eq!(root["objects"][0]["unreadable"], Value::Null, "{root}");
    assert_eq!(root["notes"], serde_json::json!([]));
    drop((producer, segment));
}

#[test]
fn top_once_sorts_and_filters() {
    let pid = std::process::id();
    let posix =
        |n: &str| TestKey(Key::posix(&format!("/shmkit-cli-top-{pid}-{n}")).expect("a name"));
    let (small, large) = (posix("a"), posix("b"));
    succeeded(&shmkit(&["create", &small.arg(), "--size", "3K"]));
    succeeded(&shmkit(&["create", &large.arg(), "--size", "5K"]));
    let filter = format!("/shmkit-cli-top-{pid}-");
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["top", "--once", "--interval", "0.1", "--filter", &filter];
        all.extend_from_slice(args);
        let snapshot = json(&shmkit(&all));
        snapshot["objects"]
            .as_array()
            .expect("an array")
            .iter()
            .map(|o| o["name"].as_str().expect("a name").to_owned())
            .collect()
    };
    assert_eq!(names(&["--json"]), [small.arg(), large.arg()]);
    assert_eq!(
        names(&["--json", "--sort", "size", "--reverse"]),
        [large.arg(), small.arg()]
    );
    assert_eq!(
        names(&["--json", "--sort", "size"]),
        [small.arg(), large.arg()]
    );
    let text = succeeded(&shmkit(&[
        "top",
        "--once",
        "--interval",
        "0.1",
        "--filter",
        &small.arg(),
    ]));
    assert_eq!(text.lines().count(), 2, "a header and one row: {text}");
    assert!(text.contains("3.0K"), "{text}");
}
