//! The drop rules of one namespace as an nftables ruleset, and applying it.
//!
//! A namespace's rules live in one table of their own, replaced as a whole in one `nft -f -`
//! transaction (declare, delete, declare again: the usual idiom for "replace, creating it if it
//! is missing"), so a namespace never passes through a state with half its rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The table holding the drop rules (family `ip`: the run's network is IPv4 only).
pub(crate) const TABLE: &str = "fencekit_torture";

/// The ruleset that makes `me`'s namespace drop what `blocked` says, and nothing else.
///
/// `blocked` holds directed pairs (from, to): for a pair with `from == me` the output chain
/// drops packets to `to`'s address; for a pair with `to == me` the input chain drops packets
/// from `from`'s address. Pairs not involving `me` are ignored; with no pair involving `me` the
/// ruleset only deletes the table. Every name in a pair involving `me` must be in `addrs`.
pub(crate) fn ruleset(
    me: &str,
    blocked: &BTreeSet<(String, String)>,
    addrs: &BTreeMap<String, Ipv4Addr>,
) -> Result<String> {
    let addr_of = |name: &str| {
        addrs
            .get(name)
            .copied()
            .with_context(|| format!("no address for member {name:?}"))
    };
    // Sets, so a pair named twice or two names sharing an address make one rule each.
    let mut drop_out = BTreeSet::new();
    let mut drop_in = BTreeSet::new();
    for (from, to) in blocked {
        if from == me {
            drop_out.insert(addr_of(to)?);
        }
        if to == me {
            drop_in.insert(addr_of(from)?);
        }
    }
    let mut text = format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n");
    if drop_out.is_empty() && drop_in.is_empty() {
        return Ok(text);
    }
    text.push_str(&format!("table ip {TABLE} {{\n"));
    // Counters cost nothing and show, in `nft list ruleset`, that a partition really bit.
    text.push_str("\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n");
    for addr in &drop_in {
        text.push_str(&format!("\t\tip saddr {addr} counter drop\n"));
    }
    text.push_str("\t}\n");
    text.push_str("\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n");
    for addr in &drop_out {
        text.push_str(&format!("\t\tip daddr {addr} counter drop\n"));
    }
    text.push_str("\t}\n}\n");
    Ok(text)
}

/// Feeds `ruleset` to `nft`, a command already set to run `nft` in the right namespace (its
/// arguments are added here).
pub(crate) fn apply(mut nft: Command, ruleset: &str) -> Result<()> {
    let mut child = nft
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    let written = match child.stdin.take() {
        // Dropping stdin at the end of this arm closes it: nft reads to EOF.
        Some(mut stdin) => stdin.write_all(ruleset.as_bytes()),
        None => Ok(()),
    };
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft -f - failed ({}): {}\nruleset:\n{ruleset}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("writing the ruleset to nft")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> BTreeMap<String, Ipv4Addr> {
        [("ctl", 1), ("a", 2), ("b", 3), ("c", 4)]
            .into_iter()
            .map(|(n, i)| (n.to_string(), Ipv4Addr::new(10, 77, 0, i)))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        p.iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect()
    }

    const CLEAR: &str = "table ip fencekit_torture {}\ndelete table ip fencekit_torture\n";

    #[test]
    fn nothing_blocked_only_deletes_the_table() {
        assert_eq!(ruleset("a", &pairs(&[]), &addrs()).unwrap(), CLEAR);
    }

    #[test]
    fn pairs_not_involving_me_are_ignored() {
        let blocked = pairs(&[("b", "c"), ("c", "b")]);
        assert_eq!(ruleset("a", &blocked, &addrs()).unwrap(), CLEAR);
    }

    #[test]
    fn one_way_block_drops_output_at_the_sender_and_input_at_the_receiver() {
        let blocked = pairs(&[("a", "b")]);
        let a = ruleset("a", &blocked, &addrs()).unwrap();
        let b = ruleset("b", &blocked, &addrs()).unwrap();
        assert!(a.starts_with(CLEAR));
        assert!(a.contains("ip daddr 10.77.0.3 counter drop"), "{a}");
        assert!(!a.contains("saddr"), "{a}");
        assert!(b.contains("ip saddr 10.77.0.2 counter drop"), "{b}");
        assert!(!b.contains("daddr"), "{b}");
        assert_eq!(ruleset("c", &blocked, &addrs()).unwrap(), CLEAR);
    }

    #[test]
    fn full_ruleset_text_is_exact_and_sorted() {
        let blocked = pairs(&[("a", "c"), ("a", "b"), ("b", "a"), ("ctl", "a")]);
        let expected = "table ip fencekit_torture {}\n\
             delete table ip fencekit_torture\n\
             table ip fencekit_torture {\n\
             \tchain input {\n\
             \t\ttype filter hook input priority 0; policy accept;\n\
             \t\tip saddr 10.77.0.1 counter drop\n\
             \t\tip saddr 10.77.0.3 counter drop\n\
             \t}\n\
             \tchain output {\n\
             \t\ttype filter hook output priority 0; policy accept;\n\
             \t\tip daddr 10.77.0.3 counter drop\n\
             \t\tip daddr 10.77.0.4 counter drop\n\
             \t}\n\
             }\n";
        assert_eq!(ruleset("a", &blocked, &addrs()).unwrap(), expected);
    }

    #[test]
    fn unknown_member_is_an_error() {
        let blocked = pairs(&[("a", "zz")]);
        let err = ruleset("a", &blocked, &addrs()).unwrap_err();
        assert!(err.to_string().contains("zz"), "{err}");
        // A pair that does not involve `me` is not looked up.
        assert!(ruleset("b", &blocked, &addrs()).is_ok());
    }
}
