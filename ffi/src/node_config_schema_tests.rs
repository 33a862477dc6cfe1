//! The JSON Schema shipped beside the header (`include/fencekit-node-config.schema.json`),
//! checked against the parser it describes: it names exactly the fields the parser reads,
//! accepts every configuration the parser accepts, and refuses nothing else but what only the
//! parser's relational rules (listed below) refuse.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::parse;

const SCHEMA: &str = include_str!("../include/fencekit-node-config.schema.json");
const README: &str = include_str!("../README.md");

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: LazyLock<jsonschema::Validator> =
        LazyLock::new(|| jsonschema::validator_for(&schema()).expect("the schema compiles"));
    &VALIDATOR
}

fn base() -> Value {
    json!({
        "id": 1, "cluster": 7, "data_dir": "/var/lib/app/fk-1", "listen": "127.0.0.1:7001",
        "peers": [{"id": 2, "addr": "127.0.0.1:7002"}],
        "tls": {"dir": "/etc/app/fencekit/node-1"}
    })
}

/// Why the parser may refuse what the schema accepts: rules relating several fields (or
/// values), which a schema does not express, and `1.0`, which JSON Schema counts as an
/// integer and serde does not.
const PARSER_ONLY_RULES: [&str; 10] = [
    "itself",                                 // peers lists this node
    "neither this node nor one of its peers", // a voter no one can reach
    "duplicate field",                        // a key twice in one object
    "twice",                                  // a node twice in peers or voters
    "do not include this node",               // voters without this node
    "must be less than election_tick",        // heartbeat_tick >= election_tick
    "timing.margin_ms: margin",               // margin below one tick
    "the lease",                              // a lease that does not fit
    "listen = ",                              // not an IP socket address
    "floating point",                         // 1.0 for an integer
];

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    assert!(jsonschema::meta::is_valid(&schema()));
    assert_eq!(
        schema()["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// The configuration ffi/README.md shows is valid and parses.
#[test]
fn the_documented_configuration_is_valid_and_parses() {
    let start = README
        .find("```json\n{")
        .expect("README shows a JSON config")
        + 8;
    let end = start + README[start..].find("```").expect("the block ends");
    let text = &README[start..end];
    let config: Value = serde_json::from_str(text).expect("README's config is JSON");
    assert!(validator().is_valid(&config), "{text}");
    parse(text).unwrap_or_else(|e| panic!("README's config does not parse: {e}"));
    assert!(validator().is_valid(&base()));
    parse(&base().to_string()).expect("the base parses");
}

/// The fields serde expects in the object at `place`, from its "unknown field" error.
fn parser_fields(place: &str) -> Vec<String> {
    let mut config = base();
    let target = match place {
        "" => &mut config,
        "peers" => &mut config["peers"][0],
        "timing" => {
            config["timing"] = json!({});
            &mut config["timing"]
        }
        "tls" => &mut config["tls"],
        other => panic!("no place {other}"),
    };
    target["zz_unknown"] = json!(1);
    let message = parse(&config.to_string())
        .err()
        .expect("refused")
        .to_string();
    let list = message
        .split("expected one of ")
        .nth(1)
        .and_then(|rest| rest.split(" at line ").next())
        .unwrap_or_else(|| panic!("{message}"));
    let mut fields: Vec<String> = list
        .split(", ")
        .map(|f| {
            f.trim_matches(|c: char| c == '`' || !c.is_ascii_graphic())
                .to_owned()
        })
        .collect();
    fields.sort();
    fields
}

fn schema_fields(properties: &Value) -> Vec<String> {
    let mut fields: Vec<String> = properties
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

#[test]
fn the_schema_names_exactly_the_fields_the_parser_reads() {
    let schema = schema();
    let top = &schema["properties"];
    assert_eq!(schema_fields(top), parser_fields(""));
    assert_eq!(
        schema_fields(&top["peers"]["items"]["properties"]),
        parser_fields("peers")
    );
    assert_eq!(
        schema_fields(&top["timing"]["properties"]),
        parser_fields("timing")
    );
    let mut tls: Vec<String> = top["tls"]["oneOf"]
        .as_array()
        .expect("tls is one of two forms")
        .iter()
        .filter(|form| form["properties"].is_object())
        .flat_map(|form| schema_fields(&form["properties"]))
        .collect();
    tls.sort();
    tls.dedup();
    assert_eq!(tls, parser_fields("tls"));
}

/// Where a mutation writes.
const PLACES: [&[&str]; 24] = [
    &["id"],
    &["cluster"],
    &["data_dir"],
    &["listen"],
    &["peers"],
    &["peers", "0", "id"],
    &["peers", "0", "addr"],
    &["peers", "0", "descriptor"],
    &["voters"],
    &["join"],
    &["segment_size"],
    &["timing"],
    &["timing", "tick_ms"],
    &["timing", "election_tick"],
    &["timing", "heartbeat_tick"],
    &["timing", "max_drift"],
    &["timing", "margin_ms"],
    &["descriptor"],
    &["tls"],
    &["tls", "dir"],
    &["tls", "cert"],
    &["insecure"],
    &["test_hooks"],
    &["zz_unknown"],
];

/// Values worth trying anywhere: edges of every range, every JSON type.
fn values() -> Vec<Value> {
    vec![
        json!(-1),
        json!(0),
        json!(1),
        json!(2),
        json!(3),
        json!(7),
        json!(10),
        json!(20),
        json!(4096),
        json!(65536),
        json!(1u64 << 30),
        json!((1u64 << 30) + 4096),
        json!(10_000),
        json!(10_001),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.0),
        json!(0.05),
        json!(0.4999),
        json!(0.5),
        json!(-0.1),
        json!(""),
        json!("x"),
        json!("127.0.0.1:7003"),
        json!("[::1]:7003"),
        json!("999.1.1.1:7003"),
        json!("127.0.0.1:99999"),
        json!("localhost:7003"),
        json!(true),
        json!(false),
        json!(null),
        json!([]),
        json!([1]),
        json!([1, 2]),
        json!([1, 1]),
        json!([2, 3]),
        json!([0]),
        json!({}),
        json!({"dir": "/d"}),
        json!({"dir": ""}),
        json!({"cert": "c", "key": "k", "ca": "a"}),
        json!({"cert": "c"}),
        json!({"dir": "/d", "cert": "c", "key": "k", "ca": "a"}),
        json!([{"id": 2, "addr": "a:1"}]),
        json!([{"id": 1, "addr": "a:1"}]),
        json!([{"id": 2, "addr": "a:1"}, {"id": 2, "addr": "b:1"}]),
        json!([{"id": 2}]),
        json!({"tick_ms": 10, "margin_ms": 10}),
        json!({"election_tick": 3, "heartbeat_tick": 3}),
        json!({"tick_ms": 100, "margin_ms": 10}),
        // Arrays where objects belong: serde would read them by position.
        json!([10, 20, 3, 0.05, 10]),
        json!(["/d"]),
        json!([[2, "a:1", null]]),
        json!("127.000.0.1:7003"),
        json!("127.0.0.1:65536"),
        json!("[::1%lo]:7003"),
    ]
}

/// `config` with `value` at `place` (creating objects on the way; an array index past the end
/// appends), or with `place` removed when `value` is `None`.
fn mutate(config: &mut Value, place: &[&str], value: Option<Value>) {
    let (last, way) = place.split_last().expect("a place");
    let mut at = config;
    for step in way {
        at = match (at, step.parse::<usize>()) {
            (Value::Array(items), Ok(i)) => {
                if items.len() <= i {
                    items.push(json!({}));
                }
                let last = items.len() - 1;
                &mut items[i.min(last)]
            }
            (Value::Object(fields), _) => fields.entry(step.to_string()).or_insert(json!({})),
            // A value of another type on the way: the mutation does not apply.
            _ => return,
        };
    }
    if let Value::Object(fields) = at {
        match value {
            Some(v) => {
                fields.insert(last.to_string(), v);
            }
            None => {
                fields.remove(*last);
            }
        }
    }
}

fn mutation() -> impl Strategy<Value = (usize, Option<usize>)> {
    (
        0..PLACES.len(),
        prop_oneof![1 => Just(None), 9 => (0..values().len()).prop_map(Some)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever the parser accepts, the schema accepts; whatever the schema accepts and the
    /// parser refuses, it refuses by one of its relational rules.
    #[test]
    fn the_schema_agrees_with_the_parser(mutations in prop::collection::vec(mutation(), 1..4)) {
        let values = values();
        let mut config = base();
        for (place, value) in mutations {
            mutate(&mut config, PLACES[place], value.map(|v| values[v].clone()));
        }
        let valid = validator().is_valid(&config);
        match parse(&config.to_string()) {
            Ok(_) => prop_assert!(valid, "the parser accepts what the schema refuses: {config}"),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    !valid || PARSER_ONLY_RULES.iter().any(|rule| message.contains(rule)),
                    "the schema accepts {config}, which the parser refuses: {message}"
                );
            }
        }
    }
}

/// Cases an outside attack found where the two disagreed; each now agrees (or the parser's
/// refusal is one of its listed rules).
#[test]
fn the_cases_an_attack_found_agree() {
    let with = |changes: &[(&[&str], Value)]| {
        let mut config = base();
        for (place, value) in changes {
            mutate(&mut config, place, Some(value.clone()));
        }
        config
    };
    let cases = [
        with(&[(&["join"], json!(true)), (&["voters"], json!(null))]),
        with(&[(&["voters"], json!([1, 1]))]),
        with(&[(&["voters"], json!([1, 99]))]),
        with(&[(&["cluster"], json!(1.0))]),
        with(&[(&["listen"], json!("01.2.3.4:7001"))]),
        with(&[(&["listen"], json!("127.0.0.1:65536"))]),
        with(&[(&["listen"], json!("[fe80::1%eth0]:7001"))]),
        with(&[(&["timing"], json!([10, 20, 3, 0.05, 10]))]),
        with(&[(&["peers"], json!([[2, "127.0.0.1:7002", null]]))]),
        json!([
            1,
            7,
            "/d",
            "127.0.0.1:7001",
            [],
            null,
            false,
            null,
            {},
            null,
            null,
            true
        ]),
    ];
    for config in cases {
        let valid = validator().is_valid(&config);
        match parse(&config.to_string()) {
            Ok(_) => assert!(
                valid,
                "the parser accepts what the schema refuses: {config}"
            ),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    !valid || PARSER_ONLY_RULES.iter().any(|rule| message.contains(rule)),
                    "the schema accepts {config}, which the parser refuses: {message}"
                );
            }
        }
    }
}
