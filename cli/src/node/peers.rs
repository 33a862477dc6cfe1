//! The `--peers` list: every member of the group as `ID=HOST:PORT`, comma-separated.

use std::net::SocketAddr;

use fencekit::NodeId;

/// One member of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002,...`; the message says what is wrong and how
/// the list is written.
pub(crate) fn parse(list: &str) -> Result<Vec<Member>, String> {
    const FORM: &str = "write every member as ID=HOST:PORT, comma-separated, such as \
                        1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003";
    let mut members: Vec<Member> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("peer {item:?} has no '=': {FORM}"))?;
        let id = id
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|id| NodeId::new(id).ok())
            .ok_or_else(|| format!("peer {item:?}: the id must be 1 to 2^64-1; {FORM}"))?;
        let addr = addr
            .trim()
            .parse::<SocketAddr>()
            .map_err(|e| format!("peer {item:?}: the address {e}; {FORM}"))?;
        if members.iter().any(|m| m.id == id) {
            return Err(format!("node {id} appears twice in the peer list"));
        }
        if let Some(other) = members.iter().find(|m| m.addr == addr) {
            return Err(format!(
                "nodes {} and {id} share the address {addr}",
                other.id
            ));
        }
        members.push(Member { id, addr });
    }
    if members.is_empty() {
        return Err(format!("the peer list is empty: {FORM}"));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_parses_and_every_mistake_is_named() {
        let members = parse("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].addr.port(), 7002);
        for (list, says) in [
            ("", "empty"),
            ("1:127.0.0.1:7001", "no '='"),
            ("0=127.0.0.1:7001", "1 to 2^64-1"),
            ("x=127.0.0.1:7001", "1 to 2^64-1"),
            ("1=localhost", "the address"),
            ("1=127.0.0.1:7001,1=127.0.0.1:7002", "twice"),
            ("1=127.0.0.1:7001,2=127.0.0.1:7001", "share"),
        ] {
            let e = parse(list).unwrap_err();
            assert!(e.contains(says), "{list:?}: {e}");
        }
    }
}
