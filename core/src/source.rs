//! Token sources: which coordinator minted a token's numbers.
//!
//! A generation means something only beside the other generations of the coordinator that
//! numbered it: revision 1,000,000 of one etcd cluster says nothing about revision 5 of
//! another, nor about a fencekit group's term 5. So a fence remembers, for each resource, the
//! source its tokens come from, and refuses a token of another source
//! ([`crate::Verdict::ForeignSource`]). Moving a resource to a new source (a re-created etcd
//! cluster, a migration) is an operator's explicit, durable act: [`crate::Fence::rebase`].
//!
//! A source is named `<kind>:<identity>`, 3 to [`SOURCE_NAME_MAX`] printable ASCII bytes
//! without spaces. The kinds fencekit knows have constructors that build the identity the same
//! way in every binding, from what makes that coordinator's numbering unique:
//!
//! | constructor | name | its numbering restarts when |
//! |---|---|---|
//! | [`Source::fencekit_group`] | `fencekit:<cluster id, decimal>` | the group is re-created |
//! | [`Source::etcd_cluster`] | `etcd:<cluster id, 16 hex digits>` | the cluster is re-created (a new id) |
//! | [`Source::zookeeper_ensemble`] | `zookeeper:<name>` | the ensemble's data is wiped |
//! | [`Source::kubernetes_lease`] | `k8s-lease:<namespace>/<name>/<uid>` | the Lease object is re-created (a new uid) |
//! | [`Source::named`] | `named:<name>` | whatever its owner says |
//!
//! Tokens checked without naming a source ([`crate::Fence::check`], `fk_fence_check`) come from
//! the *unnamed* source, [`Source::UNNAMED`]: every fence written before sources existed holds
//! only such marks, and keeps working unchanged.

use std::fmt;

use crate::cluster::ClusterId;
use crate::error::{FenceError, FenceFault};
use crate::limits::SOURCE_NAME_MAX;

/// Where a resource's tokens come from. See the module docs for the names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(Option<Box<str>>);

impl Source {
    /// The source of tokens checked without naming one.
    pub const UNNAMED: Source = Source(None);

    /// The text form of [`Source::UNNAMED`], which [`Source::parse`] also takes.
    pub const UNNAMED_TEXT: &'static str = "unnamed";

    /// A source from its name, `<kind>:<identity>` (or `unnamed`). Any kind is taken, so that
    /// a coordinator fencekit does not know can still be named; the identity must make its
    /// numbering unique (see the module docs). The kinds fencekit builds names for have one
    /// spelling each, so that two spellings of one coordinator (`%x` and `%X`, a leading
    /// zero) are never two sources: a rebase between them would clear a mark while the
    /// numbering goes on.
    pub fn parse(name: &str) -> Result<Source, FenceError> {
        let source = Source::parse_stored(name)?;
        if let Some((kind, identity)) = name.split_once(':')
            && let Some(form) = canonical_form_missed(kind, identity)
        {
            return Err(FenceFault::InvalidSource(format!("{name:?}: write it {form}")).into());
        }
        Ok(source)
    }

    /// Refuses a name too long to be a source's by its length alone (the C ABI does so before
    /// it reads a byte of it).
    pub fn validate_name_len(len: usize) -> Result<(), FenceError> {
        if len > SOURCE_NAME_MAX {
            return Err(FenceFault::InvalidSource(format!(
                "a name of {len} bytes; a source name is at most {SOURCE_NAME_MAX}"
            ))
            .into());
        }
        Ok(())
    }

    /// A source name as a log holds it: the general form only. A name an earlier build wrote
    /// stays readable when the rules for new names grow stricter.
    pub(crate) fn parse_stored(name: &str) -> Result<Source, FenceError> {
        if name == Self::UNNAMED_TEXT {
            return Ok(Source::UNNAMED);
        }
        let invalid =
            |why: String| Err(FenceFault::InvalidSource(format!("{name:?}: {why}")).into());
        Source::validate_name_len(name.len())?;
        if let Some(bad) = name.bytes().find(|b| !b.is_ascii_graphic()) {
            return invalid(format!(
                "byte {bad:#04x}; a source name is printable ASCII without spaces"
            ));
        }
        let Some((kind, identity)) = name.split_once(':') else {
            return invalid("a source name is <kind>:<identity>, as etcd:<cluster id>".into());
        };
        if kind.is_empty() || identity.is_empty() {
            return invalid(
                "both the kind and the identity of <kind>:<identity> are needed".into(),
            );
        }
        if !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return invalid("a kind is lowercase letters, digits and '-'".into());
        }
        Ok(Source(Some(name.into())))
    }

    /// A fencekit group's terms, named by the group's cluster id (`--cluster`).
    pub fn fencekit_group(cluster: ClusterId) -> Source {
        Source(Some(format!("fencekit:{cluster}").into()))
    }

    /// An etcd cluster's revisions, named by its cluster id (the `cluster_id` of every
    /// response header), which a re-created cluster does not share.
    pub fn etcd_cluster(cluster_id: u64) -> Source {
        Source(Some(format!("etcd:{cluster_id:016x}").into()))
    }

    /// A ZooKeeper ensemble's zxids, named by its operator (ZooKeeper has no cluster id):
    /// choose a new name when its data is wiped, since zxids then restart.
    pub fn zookeeper_ensemble(name: &str) -> Result<Source, FenceError> {
        Source::parse(&format!("zookeeper:{name}"))
    }

    /// A Kubernetes Lease's leader transitions, named by the Lease's namespace, name and
    /// `metadata.uid`, which a re-created Lease does not share.
    pub fn kubernetes_lease(namespace: &str, name: &str, uid: &str) -> Result<Source, FenceError> {
        Source::parse(&format!("k8s-lease:{namespace}/{name}/{uid}"))
    }

    /// Any other coordinator, by a name of its owner's choosing.
    pub fn named(name: &str) -> Result<Source, FenceError> {
        Source::parse(&format!("named:{name}"))
    }

    /// The name, `unnamed` for [`Source::UNNAMED`].
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or(Self::UNNAMED_TEXT)
    }

    /// True for a fencekit group's source (`fencekit:<cluster id>`).
    pub fn is_fencekit_group(&self) -> bool {
        self.as_str().starts_with("fencekit:")
    }

    /// True for [`Source::UNNAMED`].
    pub fn is_unnamed(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({})", self.as_str())
    }
}

impl std::str::FromStr for Source {
    type Err = FenceError;

    fn from_str(name: &str) -> Result<Source, FenceError> {
        Source::parse(name)
    }
}

/// The one spelling of the kinds fencekit names, as words for a refusal when `identity` is
/// not in it; `None` when it is, or for a kind fencekit does not know.
fn canonical_form_missed(kind: &str, identity: &str) -> Option<&'static str> {
    let lower_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let (ok, form) = match kind {
        "etcd" => (
            identity.len() == 16
                && identity.bytes().all(lower_hex)
                && identity != "0000000000000000",
            "etcd:<cluster id as 16 lowercase hex digits, not all zero>",
        ),
        "fencekit" => (
            identity
                .parse::<u64>()
                .is_ok_and(|n| n.to_string() == identity),
            "fencekit:<cluster id in decimal, no leading zeros>",
        ),
        // Kubernetes names, namespaces and uids are lowercase (DNS names, RFC 4122 text).
        "k8s-lease" => {
            let parts: Vec<&str> = identity.split('/').collect();
            let ok = parts.len() == 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && *p != "."
                        && *p != ".."
                        && p.bytes()
                            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.'))
                });
            (
                ok,
                "k8s-lease:<namespace>/<name>/<uid>, each lowercase as Kubernetes writes them",
            )
        }
        _ => (true, ""),
    };
    (!ok).then_some(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in [
            "etcd:00000000deadbeef",
            "zookeeper:prod-zk",
            "k8s-lease:default/scheduler/3f2a-11",
            "named:x",
            "my-coordinator2:a:b",
            "unnamed",
        ] {
            assert_eq!(Source::parse(good).unwrap().as_str(), good);
        }
        let long = format!("named:{}", "a".repeat(SOURCE_NAME_MAX));
        for bad in [
            "",
            "etcd",
            ":x",
            "etcd:",
            "Etcd:x",
            "etcd: x",
            "etcd:x\n",
            "et_cd:x",
            "etcd:5D1E0F3C2A6B4E10",
            "etcd:1",
            "etcd:5d1e0f3c2a6b4e1g",
            "fencekit:01",
            "fencekit:0x7",
            "fencekit:18446744073709551616",
            "k8s-lease:onlyns",
            "k8s-lease://",
            "k8s-lease:a/b/c/d",
            "k8s-lease:ns/n/3F1C2A9E",
            "k8s-lease:NS/n/u",
            "k8s-lease:./n/u",
            "k8s-lease:ns/../u",
            "etcd:0000000000000000",
            "etcd:\u{e9}",
            long.as_str(),
        ] {
            let e = Source::parse(bad).unwrap_err();
            assert!(
                matches!(e.fault(), FenceFault::InvalidSource(_)),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn constructors_build_the_documented_names() {
        assert_eq!(
            Source::etcd_cluster(0xdead_beef).as_str(),
            "etcd:00000000deadbeef"
        );
        assert_eq!(
            Source::kubernetes_lease("ops", "sched", "u-1")
                .unwrap()
                .as_str(),
            "k8s-lease:ops/sched/u-1"
        );
        assert_eq!(
            Source::fencekit_group(ClusterId::new(7)).as_str(),
            "fencekit:7"
        );
        assert_eq!(
            Source::zookeeper_ensemble("zk").unwrap().as_str(),
            "zookeeper:zk"
        );
        assert!(Source::named("has space").is_err());
        assert!(Source::UNNAMED.is_unnamed());
        assert_eq!(Source::UNNAMED.to_string(), "unnamed");
    }
}
