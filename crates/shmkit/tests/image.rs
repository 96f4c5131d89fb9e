//! Offset images: round trips of lists and trees (proptest), a list and a
//! tree serialized by one process into a POSIX segment and rebuilt by
//! another, and corrupt or hostile images, which must give `Corrupt` after
//! bounded work and never panic.

mod processes;

use std::collections::LinkedList;
use std::sync::atomic::{AtomicU32, Ordering};

use processes::{args, next_command, report, Cleanup, Peer, ROLE};
use proptest::collection::vec;
use proptest::prelude::*;
use shmkit::offset::image::{
    from_attachment, from_image, to_image, Image, ImageWriter, Relocate, HEADER_LEN, MAX_DEPTH,
};
use shmkit::offset::Offset;
use shmkit::{relocate_struct, Error, Key, Mode, ReadOnly, ReadWrite, Segment};

#[derive(Clone, Debug, PartialEq)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
}
relocate_struct!(Record { id, name, tags });

#[derive(Clone, Debug, PartialEq)]
struct Tree {
    value: Record,
    children: Vec<Tree>,
}
relocate_struct!(Tree { value, children });

/// The seed's singly linked list: a pointer to the next node, or null.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    record: Record,
    next: Option<Box<Node>>,
}
relocate_struct!(Node { record, next });

/// Every other kind of slot, to round-trip once each.
#[derive(Clone, Debug, PartialEq)]
struct Mixed {
    small: u8,
    flag: bool,
    letter: char,
    signed: i16,
    maybe: Option<u64>,
    maybe_not: Option<String>,
    pair: (u32, String),
    real: f32,
    boxed: Box<i64>,
    count: usize,
    bytes: Vec<u8>,
    list_of_lists: LinkedList<Vec<u16>>,
}
relocate_struct!(Mixed {
    small,
    flag,
    letter,
    signed,
    maybe,
    maybe_not,
    pair,
    real,
    boxed,
    count,
    bytes,
    list_of_lists,
});

fn record(id: u64) -> Record {
    Record {
        id,
        name: format!("record {id}"),
        tags: (0..id % 3).map(|t| format!("tag{t}")).collect(),
    }
}

/// Builds the seed's list from records, first record first.
fn chain(records: Vec<Record>) -> Option<Box<Node>> {
    records
        .into_iter()
        .rev()
        .fold(None, |next, record| Some(Box::new(Node { record, next })))
}

/// Drops a chain without recursion.
fn unchain(mut head: Option<Box<Node>>) {
    while let Some(mut node) = head {
        head = node.next.take();
    }
}

/// What the writer process sends and the reader process expects: a list
/// and a tree, built the same way in both.
fn sample() -> (LinkedList<Record>, Tree) {
    let list = (1..=50).map(record).collect();
    let tree = Tree {
        value: record(100),
        children: (0..4)
            .map(|i| Tree {
                value: record(200 + i),
                children: (0..i)
                    .map(|j| Tree {
                        value: record(300 + j),
                        children: vec![],
                    })
                    .collect(),
            })
            .collect(),
    };
    (list, tree)
}

fn expect_corrupt<T: Relocate + std::fmt::Debug>(bytes: &[u8], needle: &str) {
    match from_image::<T>(bytes) {
        Err(Error::Corrupt(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected Corrupt containing {needle:?}, got {other:?}"),
    }
}

fn read_u64(bytes: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn write_u64(bytes: &mut [u8], at: u64, value: u64) {
    let at = at as usize;
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// The offsets of a list image's nodes, in order, and the root slot.
fn list_nodes(bytes: &[u8]) -> (u64, Vec<u64>) {
    let root = Image::new(bytes).unwrap().root_offset();
    let mut nodes = vec![];
    let mut next = read_u64(bytes, root);
    while next != 0 {
        nodes.push(next);
        next = read_u64(bytes, next);
    }
    (root, nodes)
}

// ---------------------------------------------------------------------------
// Round trips

fn arb_text() -> impl Strategy<Value = String> {
    // Any scalar values at all, control characters and astral planes included.
    vec(any::<char>(), 0..24).prop_map(String::from_iter)
}

fn arb_record() -> impl Strategy<Value = Record> {
    (any::<u64>(), arb_text(), vec(arb_text(), 0..4)).prop_map(|(id, name, tags)| Record {
        id,
        name,
        tags,
    })
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    let leaf = arb_record().prop_map(|value| Tree {
        value,
        children: vec![],
    });
    // At most 5 levels, about 64 nodes, up to 5 children each.
    leaf.prop_recursive(5, 64, 5, |inner| {
        (arb_record(), vec(inner, 0..5)).prop_map(|(value, children)| Tree { value, children })
    })
}

fn arb_mixed() -> impl Strategy<Value = Mixed> {
    (
        (any::<u8>(), any::<bool>(), any::<char>(), any::<i16>()),
        (any::<Option<u64>>(), proptest::option::of(arb_text())),
        (
            (any::<u32>(), arb_text()),
            any::<f32>(),
            any::<i64>(),
            any::<usize>(),
        ),
        (vec(any::<u8>(), 0..40), vec(vec(any::<u16>(), 0..5), 0..5)),
    )
        .prop_map(
            |(
                (small, flag, letter, signed),
                (maybe, maybe_not),
                (pair, real, boxed, count),
                (bytes, lists),
            )| Mixed {
                small,
                flag,
                letter,
                signed,
                maybe,
                maybe_not,
                pair,
                real,
                boxed: Box::new(boxed),
                count,
                bytes,
                list_of_lists: lists.into_iter().collect(),
            },
        )
}

/// Decodes `bytes` and checks that the value, encoded again, gives the very
/// same bytes: the encoding is canonical and decoding lost nothing.
fn round_trip<T: Relocate>(value: &T) -> T {
    let bytes = to_image(value);
    assert_eq!(bytes.len() % 8, 0);
    let decoded: T = from_image(&bytes).unwrap();
    assert_eq!(to_image(&decoded), bytes, "re-encoding differs");
    decoded
}

proptest! {
    #[test]
    fn vec_of_records_round_trips(records in vec(arb_record(), 0..40)) {
        prop_assert_eq!(round_trip(&records), records);
    }

    #[test]
    fn linked_list_of_records_round_trips(records in vec(arb_record(), 0..40)) {
        let list: LinkedList<Record> = records.into_iter().collect();
        prop_assert_eq!(round_trip(&list), list);
    }

    #[test]
    fn trees_round_trip(tree in arb_tree()) {
        prop_assert_eq!(round_trip(&tree), tree);
    }

    #[test]
    fn box_chains_round_trip(records in vec(arb_record(), 0..120)) {
        let head = chain(records);
        let decoded = round_trip(&head);
        prop_assert_eq!(&decoded, &head);
        unchain(decoded);
        unchain(head);
    }

    #[test]
    fn unicode_strings_round_trip(text in arb_text(), also in any::<String>()) {
        prop_assert_eq!(round_trip(&text), text);
        prop_assert_eq!(round_trip(&also), also);
    }

    #[test]
    fn every_kind_of_slot_round_trips(mixed in arb_mixed()) {
        let decoded = round_trip(&mixed);
        // Compare floats by their bits (NaN != NaN).
        prop_assert_eq!(decoded.real.to_bits(), mixed.real.to_bits());
        prop_assert_eq!(
            Mixed { real: 0.0, ..decoded },
            Mixed { real: 0.0, ..mixed }
        );
    }
}

#[test]
fn a_list_of_a_million_nodes_decodes_without_recursion() {
    let list: LinkedList<u64> = (0..1_000_000).collect();
    let bytes = to_image(&list);
    assert_eq!(bytes.len() as u64, HEADER_LEN + 16 + 16 * 1_000_000);
    let decoded: LinkedList<u64> = from_image(&bytes).unwrap();
    assert!(decoded.iter().copied().eq(0..1_000_000));
}

#[test]
fn box_chains_decode_up_to_the_depth_limit() {
    // The root Option is one level, each Box one more (and a non-empty Vec
    // in the last node would be one more again: no tags here).
    let untagged = |id| Record {
        id,
        name: format!("record {id}"),
        tags: vec![],
    };
    let ok = chain((0..u64::from(MAX_DEPTH) - 1).map(untagged).collect());
    let decoded: Option<Box<Node>> = from_image(&to_image(&ok)).unwrap();
    assert!(decoded == ok);
    unchain(decoded);

    let deeper = chain((0..u64::from(MAX_DEPTH)).map(untagged).collect());
    expect_corrupt::<Option<Box<Node>>>(&to_image(&deeper), "nested more than");
    unchain(ok);
    unchain(deeper);
}

#[test]
fn layouts_are_as_documented() {
    assert_eq!(Record::SIZE, 40, "id 8, name {{offset, len}} 16, tags 16");
    assert_eq!(Node::SIZE, 48, "record 40, next 8");
    assert_eq!(Tree::SIZE, 56);
    assert_eq!(<Option<Box<Node>>>::SIZE, 8);
    assert_eq!(<(u8, u64)>::SIZE, 16);

    // A Node chain of two: the first node's last 8 bytes are the offset of
    // the second, whose last 8 bytes are 0 (null).
    let head = chain(vec![record(1), record(2)]).unwrap();
    let mut w = ImageWriter::new();
    let first = w.push_value(&*head);
    let bytes = w.finish(first);
    let second = read_u64(&bytes, first.get() + 40);
    assert!(second > first.get() && second.is_multiple_of(8));
    assert_eq!(read_u64(&bytes, second + 40), 0);
    assert_eq!(read_u64(&bytes, second), 2, "the second record's id");
}

#[test]
fn an_image_decodes_again_with_a_fresh_budget() {
    let bytes = to_image(&sample());
    let image = Image::new(&bytes).unwrap();
    for _ in 0..3 {
        assert_eq!(
            image.root::<(LinkedList<Record>, Tree)>().unwrap(),
            sample()
        );
    }
}

// ---------------------------------------------------------------------------
// Across a process boundary

static SEGMENTS: AtomicU32 = AtomicU32::new(1);

/// A fresh POSIX key: `/shmkit-test-image-PID-N`.
fn image_key() -> Key {
    let n = SEGMENTS.fetch_add(1, Ordering::Relaxed);
    Key::posix(&format!("/shmkit-test-image-{}-{n}", std::process::id())).unwrap()
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let key: Key = args().parse().unwrap();
    match role.as_str() {
        "writer" => writer(&key),
        other => panic!("unknown role {other}"),
    }
}

/// Serializes the sample into a new segment of exactly the image's size,
/// reports its size and where this process mapped it, and waits for EOF.
fn writer(key: &Key) {
    let bytes = to_image(&sample());
    let segment = Segment::create(key, bytes.len() as u64, Mode::new(0o600)).unwrap();
    let attachment = segment.attach(ReadWrite).unwrap();
    attachment.write_at(0, &bytes).unwrap();
    report(&format!(
        "wrote {} {:x}",
        bytes.len(),
        attachment.as_ptr() as usize
    ));
    assert_eq!(next_command(), "", "the parent only closes stdin");
}

#[test]
fn a_list_and_a_tree_cross_a_process_boundary() {
    let key = image_key();
    let _cleanup = Cleanup(key.clone());
    let mut peer = Peer::spawn("writer", &key.to_string(), None);
    let line = peer.expect_line();
    let (size, child_address) = match line.split(' ').collect::<Vec<_>>()[..] {
        ["wrote", size, address] => (size.parse::<u64>().unwrap(), address.to_owned()),
        _ => panic!("unexpected report {line:?}"),
    };

    // Copy the image out (the child could still write the segment), header
    // first to learn the length, then decode the private copy.
    let attachment = Segment::open(&key).unwrap().attach(ReadOnly).unwrap();
    let mut header = [0; HEADER_LEN as usize];
    attachment.read_at(0, &mut header).unwrap();
    assert_eq!(Image::declared_len(&header).unwrap(), size);
    let mut bytes = vec![0; size as usize];
    attachment.read_at(0, &mut bytes).unwrap();
    let received: (LinkedList<Record>, Tree) = from_image(&bytes).unwrap();
    assert_eq!(received, sample());
    // The same in one call.
    let again: (LinkedList<Record>, Tree) = from_attachment(&attachment, 0).unwrap();
    assert_eq!(again, sample());
    eprintln!(
        "child mapped the image at {child_address}, this process at {:x}",
        attachment.as_ptr() as usize
    );

    drop(attachment);
    peer.finish();
    Segment::open(&key).unwrap().remove().unwrap();
}

// ---------------------------------------------------------------------------
// Corrupt and hostile images

/// An image in a segment that declares more bytes than the segment has (or
/// starts too near its end) is refused before anything that large is
/// allocated or read; a damaged one is Corrupt.
#[test]
fn from_attachment_checks_the_declared_length_against_the_segment() {
    let key = image_key();
    let _cleanup = Cleanup(key.clone());
    let segment = Segment::create(&key, 4096, Mode::OWNER_ONLY).unwrap();
    let memory = segment.attach(ReadWrite).unwrap();
    let bytes = sample_list();
    memory.write_at(100, &bytes).unwrap();
    let list: LinkedList<Record> = from_attachment(&memory, 100).unwrap();
    assert_eq!(list, (1..=3).map(record).collect::<LinkedList<Record>>());

    // The length field (bytes 24..32 of the header) says 1 GiB.
    memory
        .write_at(100 + 24, &(1u64 << 30).to_le_bytes())
        .unwrap();
    match from_attachment::<LinkedList<Record>, _>(&memory, 100) {
        Err(Error::OutOfBounds { offset, len, size }) => {
            assert_eq!((offset, len, size), (100, 1 << 30, 4096))
        }
        other => panic!("expected OutOfBounds, got {other:?}"),
    }
    // A header that does not fit at all.
    assert!(matches!(
        from_attachment::<u64, _>(&memory, 4090),
        Err(Error::OutOfBounds { .. })
    ));
    // The right length and a damaged magic: Corrupt.
    memory
        .write_at(100 + 24, &(bytes.len() as u64).to_le_bytes())
        .unwrap();
    memory.write_at(100, b"SHMKIMG9").unwrap();
    assert!(matches!(
        from_attachment::<LinkedList<Record>, _>(&memory, 100),
        Err(Error::Corrupt(_))
    ));
    drop(memory);
    segment.remove().unwrap();
}

fn sample_list() -> Vec<u8> {
    to_image(&(1..=3).map(record).collect::<LinkedList<Record>>())
}

#[test]
fn a_list_whose_next_offsets_loop_is_corrupt() {
    let mut bytes = sample_list();
    let (root, nodes) = list_nodes(&bytes);
    // The last node points back to the first.
    write_u64(&mut bytes, nodes[2], nodes[0]);
    expect_corrupt::<LinkedList<Record>>(&bytes, "more nodes than its length 3");
    // And the length no longer stops the walk: only the budget does.
    write_u64(&mut bytes, root + 8, u64::MAX);
    expect_corrupt::<LinkedList<Record>>(&bytes, "cycle");
    // A node that points to itself.
    write_u64(&mut bytes, nodes[0], nodes[0]);
    expect_corrupt::<LinkedList<Record>>(&bytes, "cycle");
}

#[test]
fn a_box_chain_that_loops_is_corrupt() {
    let head = chain(vec![record(1), record(2)]);
    let mut bytes = to_image(&head);
    let root = Image::new(&bytes).unwrap().root_offset();
    let first = read_u64(&bytes, root);
    let second = read_u64(&bytes, first + 40);
    write_u64(&mut bytes, second + 40, first);
    let err = from_image::<Option<Box<Node>>>(&bytes).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    unchain(head);
}

#[test]
fn a_list_shorter_than_its_length_is_corrupt() {
    let mut bytes = sample_list();
    let (root, _) = list_nodes(&bytes);
    write_u64(&mut bytes, root + 8, 4);
    expect_corrupt::<LinkedList<Record>>(&bytes, "says it has 4 nodes but ends after 3");
}

#[test]
fn offsets_past_the_end_are_corrupt() {
    let mut bytes = sample_list();
    let len = bytes.len() as u64;
    let (root, nodes) = list_nodes(&bytes);
    write_u64(&mut bytes, nodes[1], len);
    expect_corrupt::<LinkedList<Record>>(&bytes, "runs past the end");
    write_u64(&mut bytes, nodes[1], u64::MAX - 7);
    expect_corrupt::<LinkedList<Record>>(&bytes, "runs past the end");
    write_u64(&mut bytes, root, 16);
    expect_corrupt::<LinkedList<Record>>(&bytes, "points into the image header");

    // A string and a vector that run past the end, or overflow.
    let mut bytes = to_image(&record(2));
    let root = Image::new(&bytes).unwrap().root_offset();
    let good = bytes.clone();
    write_u64(&mut bytes, root + 16, len); // name.len
    expect_corrupt::<Record>(&bytes, "runs past the end");
    let mut bytes = good.clone();
    write_u64(&mut bytes, root + 32, u64::MAX); // tags.len
    expect_corrupt::<Record>(&bytes, "larger than the image");
    let mut bytes = good;
    write_u64(&mut bytes, root + 32, 1 << 40);
    expect_corrupt::<Record>(&bytes, "runs past the end");
}

#[test]
fn misaligned_offsets_are_corrupt() {
    let mut bytes = sample_list();
    let (root, nodes) = list_nodes(&bytes);
    let good = bytes.clone();
    write_u64(&mut bytes, root, nodes[0] + 4);
    expect_corrupt::<LinkedList<Record>>(&bytes, "not a multiple of 8");
    let mut bytes = good.clone();
    let name = read_u64(&bytes, nodes[0] + 16);
    write_u64(&mut bytes, nodes[0] + 16, name + 1);
    expect_corrupt::<LinkedList<Record>>(&bytes, "not a multiple of 8");
    let mut bytes = good;
    write_u64(&mut bytes, 16, root + 4); // the header's root
    expect_corrupt::<LinkedList<Record>>(&bytes, "root offset");
}

#[test]
fn bad_headers_are_corrupt() {
    let good = sample_list();
    let len = good.len() as u64;

    let mut bytes = good.clone();
    write_u64(&mut bytes, 24, len + 8);
    expect_corrupt::<LinkedList<Record>>(&bytes, "image header says the image is");
    expect_corrupt::<LinkedList<Record>>(&good[..good.len() - 8], "image header says");
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0; 8]);
    expect_corrupt::<LinkedList<Record>>(&bytes, "image header says");
    write_u64(&mut bytes, 24, 8);
    expect_corrupt::<LinkedList<Record>>(&bytes, "less than its header");

    let mut bytes = good.clone();
    bytes[0] = b'X';
    expect_corrupt::<LinkedList<Record>>(&bytes, "not a shmkit image");
    let mut bytes = good.clone();
    bytes[8] = 2;
    expect_corrupt::<LinkedList<Record>>(&bytes, "format version 2");
    let mut bytes = good.clone();
    bytes[12] = 1;
    expect_corrupt::<LinkedList<Record>>(&bytes, "flags 0x1");
    let mut bytes = good.clone();
    write_u64(&mut bytes, 16, 0);
    expect_corrupt::<LinkedList<Record>>(&bytes, "null root");
    let mut bytes = good;
    write_u64(&mut bytes, 16, len);
    expect_corrupt::<LinkedList<Record>>(&bytes, "runs past the end");
    expect_corrupt::<u8>(&[], "shorter than its 32-byte header");
}

#[test]
fn invalid_values_are_corrupt() {
    // A string that is not UTF-8.
    let mut bytes = to_image(&record(1));
    let root = Image::new(&bytes).unwrap().root_offset();
    let name = read_u64(&bytes, root + 8) as usize;
    bytes[name] = 0xc3; // a lead byte followed by an ASCII byte
    expect_corrupt::<Record>(&bytes, "not UTF-8");

    let mut bytes = to_image(&true);
    bytes[HEADER_LEN as usize] = 2;
    expect_corrupt::<bool>(&bytes, "not 0 or 1");

    let mut bytes = to_image(&'x');
    write_u64(&mut bytes, HEADER_LEN, 0xd800); // a surrogate
    expect_corrupt::<char>(&bytes, "not a Unicode scalar value");

    let mut bytes = to_image(&Box::new(5u8));
    write_u64(&mut bytes, HEADER_LEN, 0);
    expect_corrupt::<Box<u8>>(&bytes, "null offset");
}

/// A tree of 41 levels in which both children of every node are the same
/// subtree: 2^40 nodes to visit if offsets were followed blindly.
fn dag_bomb(levels: u32) -> Vec<u8> {
    let value_len = Record::SIZE; // children's {offset, len} follow the value
    let mut w = ImageWriter::new();
    let mut below = Offset::<Tree>::NULL;
    for level in 0..levels {
        let pair = w.reserve::<Tree>(2);
        for i in 0..2 {
            let slot = Offset::<Tree>::new(pair.get() + i * Tree::SIZE);
            let leaf = Tree {
                value: record(u64::from(level)),
                children: vec![],
            };
            leaf.encode(&mut w, slot);
            if !below.is_null() {
                w.patch(Offset::<u64>::new(slot.get() + value_len), below.get());
                w.patch(Offset::<u64>::new(slot.get() + value_len + 8), 2);
            }
        }
        below = pair;
    }
    let root = w.reserve::<Tree>(1);
    record(levels.into()).encode(&mut w, root.cast());
    w.patch(Offset::<u64>::new(root.get() + value_len), below.get());
    w.patch(Offset::<u64>::new(root.get() + value_len + 8), 2);
    w.finish(root)
}

#[test]
fn a_dag_bomb_is_corrupt_after_bounded_work() {
    // With one level nothing is shared yet: a valid tree...
    let small: Tree = from_image(&dag_bomb(1)).unwrap();
    assert_eq!(small.children.len(), 2);
    assert_eq!(small.children[0], small.children[1]);
    // ...but bytes visited again are charged again, and the budget is the
    // image's length.
    expect_corrupt::<Tree>(&dag_bomb(2), "cycle or point to shared data");
    expect_corrupt::<Tree>(&dag_bomb(40), "cycle or point to shared data");
}

#[test]
fn a_vector_bomb_is_corrupt_after_bounded_work() {
    // 1000 vectors that all point to the same 1000 numbers: a million
    // numbers to decode from a 24 kB image, were it not for the budget.
    let mut w = ImageWriter::new();
    let numbers = w.push_slice(&[7u64; 1000]);
    let vectors = w.reserve::<Vec<u64>>(1000);
    for i in 0..1000 {
        let slot = vectors.get() + i * 16;
        w.patch(Offset::<u64>::new(slot), numbers.get());
        w.patch(Offset::<u64>::new(slot + 8), 1000);
    }
    let root = w.push([vectors.get(), 1000]);
    let bytes = w.finish(root);
    expect_corrupt::<Vec<Vec<u64>>>(&bytes, "cycle");
}

// ---------------------------------------------------------------------------
// Arbitrary bytes never panic

/// Decodes `bytes` as each of the three structures; the results do not
/// matter, only that there is no panic, no hang and no crash.
fn decode_all(bytes: &[u8]) {
    let _ = from_image::<Tree>(bytes);
    let _ = from_image::<LinkedList<Record>>(bytes);
    let _ = from_image::<Vec<String>>(bytes);
    let _ = from_image::<Option<Box<Node>>>(bytes).map(unchain);
}

/// A valid header for `body`, with the root at an 8-aligned offset in it.
fn with_header(root: u64, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len() as u64;
    let mut bytes = b"SHMKIMG1".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(HEADER_LEN + root % (body.len() as u64 + 1) / 8 * 8).to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// A valid image of one of the three structures.
fn arb_image() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arb_tree().prop_map(|tree| to_image(&tree)),
        vec(arb_record(), 0..8)
            .prop_map(|records| to_image(&records.into_iter().collect::<LinkedList<_>>())),
        vec(arb_text(), 0..8).prop_map(|texts| to_image(&texts)),
    ]
}

/// One change to an image: a random byte, or an 8-aligned word set to a
/// value likely to matter (0, an offset inside the image, a huge number).
#[derive(Clone, Debug)]
enum Mutation {
    Byte(usize, u8),
    Word(usize, u64),
    Offset(usize, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Byte(at, byte)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u64),
                Just(u64::MAX),
                Just(1 << 40),
                0..64u64,
                any::<u64>()
            ]
        )
            .prop_map(|(at, word)| Mutation::Word(at, word)),
        (any::<usize>(), any::<usize>()).prop_map(|(at, to)| Mutation::Offset(at, to)),
    ]
}

fn mutate(bytes: &mut [u8], mutation: &Mutation) {
    let words = bytes.len() / 8;
    match *mutation {
        Mutation::Byte(at, byte) => bytes[at % bytes.len()] = byte,
        Mutation::Word(at, word) => write_u64(bytes, (at % words * 8) as u64, word),
        Mutation::Offset(at, to) => {
            write_u64(bytes, (at % words * 8) as u64, (to % words * 8) as u64)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    #[test]
    fn a_valid_header_and_random_bytes_never_panic(
        root in any::<u64>(),
        body in vec(any::<u8>(), 0..512),
    ) {
        decode_all(&with_header(root, &body));
    }

    #[test]
    fn mutated_images_never_panic(
        image in arb_image(),
        mutations in vec(arb_mutation(), 1..6),
    ) {
        let mut bytes = image;
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        decode_all(&bytes);
    }

    #[test]
    fn mutated_headers_and_lengths_never_panic(
        image in arb_image(),
        mutation in arb_mutation(),
        cut in any::<usize>(),
    ) {
        let mut bytes = image;
        mutate(&mut bytes[..HEADER_LEN as usize], &mutation);
        decode_all(&bytes);
        decode_all(&bytes[..cut % (bytes.len() + 1)]);
    }
}
